"""YAML configs with ``key=value`` overrides (dotted keys, values parsed as YAML: ``train.lr=1e-4``, ``data.limit=50``).

A config is a plain nested dict; each method validates its own section with a pydantic model, so a wrong key or
type fails with a message that names the key.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from empathkit.errors import ConfigError

REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def resolve_recipe(name_or_path: str) -> Path:
    """A YAML path, or a recipe name like ``ecg-lora/cpu-small`` looked up under ``recipes/``."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (REPO_RECIPES / f"{name_or_path}.yaml", REPO_RECIPES / name_or_path):
        if cand.is_file():
            return cand
    known = sorted(str(f.relative_to(REPO_RECIPES))[:-5] for f in REPO_RECIPES.rglob("*.yaml")) if REPO_RECIPES.is_dir() else []
    raise ConfigError(f"config {name_or_path!r} not found (a YAML file, or one of the recipes: {', '.join(known)})")


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = resolve_recipe(str(path))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{line}: invalid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    base = data.pop("_base", None)
    if base:
        parent = load_yaml((p.parent / base) if not Path(base).is_absolute() and (p.parent / base).exists() else base)
        data = merge(parent, data)
    return data


def merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    out = copy.deepcopy(cfg)
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} must look like key=value (e.g. train.max_steps=50)")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string; numbers should be numbers
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                pass
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {ov!r}: {p!r} is not a section")
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = (), defaults: dict | None = None) -> dict:
    cfg = copy.deepcopy(defaults or {})
    if path:
        cfg = merge(cfg, load_yaml(path))
    return apply_overrides(cfg, overrides)


def validate(model_cls: type[BaseModel], data: dict | None, section: str = "") -> BaseModel:
    """Validate a config section; errors name the dotted key."""
    try:
        return model_cls(**(data or {}))
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = ".".join(str(x) for x in ((section,) if section else ()) + tuple(err["loc"]))
            msgs.append(f"{loc}: {err['msg']}")
        raise ConfigError("invalid config: " + "; ".join(msgs)) from None
