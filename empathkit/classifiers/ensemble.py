"""A seed ensemble: the mean of several trained classifiers' probabilities (written by hand — a mean over our own
classifier folders, which no library loads).

Folder layout: ``ensemble.json`` (``{"members": ["member-0", …], "combine": "mean-probability"}``), ``config.json``
(the shared :class:`ClassifierConfig`: labels, kind, input convention) and one sub-folder per member, each a
complete classifier folder (for fine-tuned members: ``encoder/`` + ``head.safetensors``). The members must agree on
kind, labels and input convention; loading checks it.

The ensemble builds on ``core``; importing this module registers the ``ensemble.json`` layout with
``core.register_folder_format``, so ``TextClassifier.load`` / ``load_classifier`` load ensemble folders too (the
package ``empathkit.classifiers`` imports it).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from empathkit.classifiers.core import (ClassifierConfig, LabelPredictions, TextClassifier, register_folder_format,
                                        write_config)
from empathkit.errors import DataError, ResourceMissing

COMBINE = "mean-probability"
ENSEMBLE_FILE = "ensemble.json"


class EnsembleClassifier(LabelPredictions):
    def __init__(self, members: Sequence[TextClassifier], path: Path | None = None):
        if not members:
            raise DataError("an ensemble needs at least one member")
        first = members[0].config
        for m in members[1:]:
            c = m.config
            if (c.kind, c.labels, c.multi_label, c.input, c.extra.get("input_turns")) != (
                    first.kind, first.labels, first.multi_label, first.input, first.extra.get("input_turns")):
                raise DataError(f"ensemble members disagree on kind/labels/input ({m.path} vs {members[0].path})")
        self.members = list(members)
        self.config = ClassifierConfig(**{**asdict(first), "extra": {**first.extra, "members": len(members)}})
        self.path = path

    labels = property(lambda self: self.config.labels)
    kind = property(lambda self: self.config.kind)

    def predict_proba(self, inputs: Sequence, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        return np.mean([m.predict_proba(inputs, batch_size, show_progress) for m in self.members], axis=0)

    def save(self, path: str | Path, member_dirs: Sequence[str]) -> Path:
        """Write ``ensemble.json`` and ``config.json`` into ``path``; the members are already in its sub-folders."""
        p = Path(path)
        missing = [d for d in member_dirs if not (p / d / "config.json").is_file()]
        if missing:
            raise ResourceMissing(f"{p}: ensemble member folders missing: {', '.join(missing)}")
        (p / ENSEMBLE_FILE).write_text(json.dumps({"members": list(member_dirs), "combine": COMBINE}, indent=2),
                                         encoding="utf-8")
        write_config(p, self.config)
        self.path = p
        return p

    @classmethod
    def load(cls, path: str | Path) -> "EnsembleClassifier":
        p = Path(path)
        f = p / ENSEMBLE_FILE
        try:
            spec = json.loads(f.read_text(encoding="utf-8"))
            names = spec["members"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"invalid ensemble description ({e})", file=str(f), field="members") from None
        if spec.get("combine", COMBINE) != COMBINE:
            raise DataError(f"unknown combination {spec.get('combine')!r} (known: {COMBINE})", file=str(f),
                            field="combine")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and "/" not in n and n not in (".", "..")
                                                             for n in names):
            raise DataError("members must be a non-empty list of sub-folder names", file=str(f), field="members")
        return cls([TextClassifier.load(p / n) for n in names], path=p)

    def __repr__(self) -> str:
        return f"EnsembleClassifier(kind={self.kind!r}, members={len(self.members)})"


register_folder_format(ENSEMBLE_FILE, EnsembleClassifier.load)
