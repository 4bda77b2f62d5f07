"""The quick demo emotion classifier: an emotion for the very first chat, in about a minute of CPU.

``make demo`` (``empathkit demo``) calls :func:`ensure_quick_emotion`: when no emotion classifier is trained it fits
frozen MiniLM embeddings + logistic regression (``train.train_kind`` with ``method="linear"``) on a seeded subset of
EmpatheticDialogues (:data:`QUICK_SIZES`: train contexts + situations, valid, and an ED **test** subset for the
held-out accuracy in its card) with the hyper-parameters the full frozen-feature run chose (C = 1, balanced class
weights: :data:`QUICK_LINEAR`, no grid search). It is written to the normal cache folder
(``cache_dir()/classifiers/emotion/``) with ``"variant": "demo-quick"`` in ``metrics.json``, so chat, serve and the
web page say that the quick classifier produced the emotion, and ``empathkit classifiers train emotion`` (the
fine-tuned ensemble, ED test accuracy 0.505) replaces it; ``--skip-trained`` does not count it as trained.

A classifier already in the cache (quick or full) is kept: the demo never overwrites a better model, and a
second demo run costs nothing here. ``empathkit classifiers train emotion --demo`` trains it on its own.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empathkit.classifiers.detect import QUICK_VARIANT

log = logging.getLogger(__name__)

# seeded subset sizes: ~5.3k texts to embed (108 CPU s: ~1 min on 2 idle cores); the test subset gives the card's
# held-out accuracy
QUICK_SIZES = {"train": 4000, "valid": 300, "test": 1000}
# the choice of the full frozen-feature run (C=1, balanced; docs/classifiers.md), so no grid search is needed
QUICK_LINEAR = {"c_grid": [1.0], "class_weights": ["balanced"]}


@dataclass
class QuickResult:
    """``status``: ``"trained"`` or ``"kept"`` (a classifier was already there); ``metrics``: its metrics.json."""

    status: str
    folder: Path
    metrics: dict[str, Any]

    @property
    def accuracy(self) -> float | None:
        return (self.metrics.get("test") or {}).get("accuracy")

    @property
    def is_quick(self) -> bool:
        return self.metrics.get("variant") == QUICK_VARIANT


def is_quick_folder(folder: str | Path) -> bool:
    """Whether a classifier folder holds the quick demo classifier (its metrics.json says so)."""
    p = Path(folder) / "metrics.json"
    try:
        return p.is_file() and json.loads(p.read_text(encoding="utf-8")).get("variant") == QUICK_VARIANT
    except (OSError, ValueError):
        return False


def train_quick_emotion(seed: int = 0, out_dir: str | Path | None = None, root=None,
                        sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """Train the quick classifier into ``out_dir`` (default: the emotion cache folder, replacing what is there).
    Returns its metrics (held-out ``test`` accuracy and macro-F1, ``train_seconds``)."""
    from empathkit.classifiers import classifier_dir
    from empathkit.classifiers.train import train_kind

    m = train_kind("emotion", seed=seed, out_dir=out_dir, root=root, method="linear", sizes=dict(sizes or QUICK_SIZES),
                   linear_options=QUICK_LINEAR, variant=QUICK_VARIANT, use_store=False)
    folder = Path(out_dir) if out_dir else classifier_dir("emotion")
    acc = (m.get("test") or {}).get("accuracy")
    note = ["", "## Quick demo classifier", "",
            f"Trained by `make demo` / `empathkit classifiers train emotion --demo` in {m.get('train_seconds')} s so "
            "that the first chat has a detected emotion: frozen MiniLM + logistic regression on a seeded ED subset, "
            f"no grid search (C=1, balanced: the full frozen-feature run's choice). Held-out ED test-subset accuracy "
            f"{acc:.3f}." if isinstance(acc, float) else "",
            "`empathkit classifiers train emotion` replaces it with the fine-tuned ensemble (ED test accuracy "
            "0.505, about 40 minutes on 2 cores).", ""]
    card = folder / "card.md"
    if card.is_file():
        card.write_text(card.read_text(encoding="utf-8") + "\n".join(note), encoding="utf-8")
    return m


def ensure_quick_emotion(seed: int = 0, root=None, sizes: dict[str, int] | None = None) -> QuickResult:
    """The demo's step: keep an emotion classifier that is already trained, else train the quick one."""
    from empathkit.classifiers import classifier_dir, is_trained, read_metrics

    folder = classifier_dir("emotion")
    if is_trained("emotion"):
        return QuickResult("kept", folder, read_metrics("emotion") or {})
    m = train_quick_emotion(seed=seed, root=root, sizes=sizes)
    from empathkit.classifiers import _LOADED

    _LOADED.pop(("emotion", ""), None)  # a process that looked before now loads the new one
    return QuickResult("trained", folder, m)


__all__ = ["QUICK_LINEAR", "QUICK_SIZES", "QuickResult", "ensure_quick_emotion", "is_quick_folder",
           "train_quick_emotion"]
