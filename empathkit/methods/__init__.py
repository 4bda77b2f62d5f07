"""Method registry. A new method = one sub-package with config + code, plus one ``METHODS.register`` line here.

Each entry is a :class:`~empathkit.methods.base.MethodSpec`; importing this package does not import torch-heavy
method code until a method is used.
"""

from __future__ import annotations

from empathkit.methods.base import Generator, MethodSpec
from empathkit.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")


def _register_builtin() -> None:
    from empathkit.methods.prompt import SPEC as prompt_spec

    METHODS.register("prompt", prompt_spec)
    # further methods register themselves below, one line each
    for mod in ("empathkit.methods.sft", "empathkit.methods.ecg_lora", "empathkit.methods.empo"):
        try:
            spec = getattr(__import__(mod, fromlist=["SPEC"]), "SPEC", None)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        if spec is not None:
            METHODS.register(spec.name, spec)


_register_builtin()

__all__ = ["METHODS", "Generator", "MethodSpec"]
