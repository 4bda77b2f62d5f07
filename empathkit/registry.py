"""A tiny name → object registry used for methods, metrics, backbones and prompt templates.

A new method or metric is one module plus one ``REGISTRY.register(...)`` line.
"""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

from empathkit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as ``reg.register("x", obj)`` or as a decorator ``@reg.register("x")``."""

        def _add(o: T) -> T:
            if name in self._items and not overwrite:
                raise ConfigError(f"{self.kind} '{name}' is already registered")
            self._items[name] = o
            return o

        if obj is None:
            return _add
        return _add(obj)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def items(self):
        return sorted(self._items.items())

    def names(self) -> list[str]:
        return sorted(self._items)

