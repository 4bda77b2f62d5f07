"""Where data, lexicons and caches live. Nothing external is ever committed: paths come from config / env."""

from __future__ import annotations

import os
from pathlib import Path

from empathkit.errors import ResourceMissing

_REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root(explicit: str | os.PathLike | None = None, *, required: bool = True) -> Path | None:
    """The shared data folder: ``explicit`` > ``$EMPATHKIT_DATA`` > ``../shared/data`` next to the repo (if it exists)."""
    candidates = []
    if explicit:
        candidates.append(Path(explicit))
    if os.environ.get("EMPATHKIT_DATA"):
        candidates.append(Path(os.environ["EMPATHKIT_DATA"]))
    candidates += [_REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if required:
        raise ResourceMissing(
            "no data folder found: set EMPATHKIT_DATA (or data.root in the config) to the folder holding "
            "empathetic_dialogues/, goemotions/, epitome/, nrc_vad/ … (looked at: " + ", ".join(map(str, candidates)) + ")"
        )
    return None


def ed_dir(root: str | os.PathLike | None = None) -> Path:
    """EmpatheticDialogues in the original release layout (``train.csv``/``valid.csv``/``test.csv``)."""
    r = data_root(root)
    return r / "empathetic_dialogues" / "empatheticdialogues"


def cache_dir() -> Path:
    """``$EMPATHKIT_CACHE`` or ``~/.cache/empathkit`` — converted backbones, trained classifiers, embeddings."""
    p = Path(os.environ.get("EMPATHKIT_CACHE", Path.home() / ".cache" / "empathkit"))
    p.mkdir(parents=True, exist_ok=True)
    return p
