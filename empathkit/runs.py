"""Run directories: every run saves its resolved config, seed, library versions and outputs side by side.

Layout: ``config.yaml``, ``versions.json`` (python, platform, key libraries, git commit), ``seed``,
``predictions.jsonl``, ``scores.json``, ``log.jsonl`` (method-specific), plus whatever the method saves.
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml

LIBS = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "sentence-transformers", "sacrebleu",
        "nltk", "rouge-score", "bert-score", "scikit-learn", "numpy", "empathkit")


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for lib in LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def set_seed(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover
        pass
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def new_run_dir(base: str | Path = "runs", name: str = "run") -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    p = Path(base) / f"{stamp}-{name}"
    i = 1
    while p.exists():
        p = Path(base) / f"{stamp}-{name}-{i}"
        i += 1
    p.mkdir(parents=True)
    return p


def save_run_meta(run_dir: str | Path, config: dict[str, Any], seed: int) -> Path:
    d = Path(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (d / "versions.json").write_text(json.dumps(library_versions(), indent=2), encoding="utf-8")
    (d / "seed").write_text(f"{seed}\n")
    return d


def write_jsonl(rows: Iterable[Any], path: str | Path) -> Path:
    """One JSON object per line; objects with ``to_json()`` (Prediction, …) are written through it. The rows go to a
    temporary file renamed over ``path`` when complete, so a crash never leaves a truncated file that looks whole."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r.to_json() if hasattr(r, "to_json") else r, ensure_ascii=False) + "\n")
        tmp.replace(p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """The one generic JSONL row reader: ``(line number, row)`` for every non-blank line.

    Every row must be a JSON object. A missing file, a line that is not UTF-8, not JSON or not an object raises a
    :class:`~empathkit.errors.DataError` naming ``file:line``. Typed readers (dialogues, preference pairs,
    predictions) build on this and report their own field errors with the line number it yields.
    """
    from empathkit.errors import DataError

    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("not valid UTF-8", file=str(p), line=lineno) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", file=str(p), line=lineno) from None
            except RecursionError:
                raise DataError("JSON nested deeper than the parser allows", file=str(p), line=lineno) from None
            if not isinstance(row, dict):
                raise DataError("each line must be a JSON object", file=str(p), line=lineno)
            yield lineno, row


def read_jsonl(path: str | Path) -> list[dict]:
    """All rows of a JSONL file (see :func:`iter_jsonl` for the errors)."""
    return [row for _, row in iter_jsonl(path)]


def write_run_config(run_dir: str | Path, config: dict[str, Any]) -> Path:
    """Rewrite a run directory's ``config.yaml`` (e.g. a saved generator's inference-time overrides)."""
    p = Path(run_dir) / "config.yaml"
    p.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return p


def load_run_config(run_dir: str | Path) -> dict:
    return yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"))
