"""Data layer: readers (ED release CSV/tar, JSONL dialogues, HF datasets) → ``Dialogue`` → protocol → ``Example``.

``load_dialogues(source, split)`` picks the reader from the source: a folder or ``.tar.gz`` (ED release), a
``.jsonl`` file (the documented dialogue format), ``hf:<id>`` (Hugging Face), or ``ed`` / ``None`` (the ED copy
under the data root: ``$EMPATHKIT_DATA`` or ``../shared/data``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from empathkit.data.protocols import PROTOCOLS, to_examples
from empathkit.types import Dialogue, Example


def load_dialogues(source: str | Path | None, split: str) -> list[Dialogue]:
    from empathkit.data import ed, hf, jsonl
    from empathkit.paths import ed_dir

    s = str(source) if source is not None else "ed"
    if s == "ed":
        return ed.read_split(ed_dir(), split)
    if s.startswith("hf:"):
        return hf.read_hf(s[3:], split)
    if s.endswith(".jsonl"):
        return jsonl.read_jsonl(s, split)
    return ed.read_split(s, split)


def subsample(items: Sequence, n: int | None, seed: int = 0, stratify_by_emotion: bool = False) -> list:
    """A seeded subset of ``n`` items (all when ``n`` is None or too big); optionally balanced over emotions."""
    items = list(items)
    if n is None or n >= len(items):
        return items
    rng = random.Random(seed)
    if not stratify_by_emotion:
        return [items[i] for i in sorted(rng.sample(range(len(items)), n))]
    by: dict[str, list] = {}
    for it in items:
        by.setdefault(it.emotion, []).append(it)
    for v in by.values():
        rng.shuffle(v)
    out, k = [], 0
    while len(out) < n:
        for v in by.values():
            if k < len(v) and len(out) < n:
                out.append(v[k])
        k += 1
    return out


def load_examples(source: str | Path | None, split: str, protocol: str = "every-listener",
                  max_history: int | None = None, limit: int | None = None, seed: int = 0,
                  stratify: bool = False) -> list[Example]:
    exs = to_examples(load_dialogues(source, split), protocol, max_history)
    return subsample(exs, limit, seed, stratify)


__all__ = ["load_dialogues", "load_examples", "to_examples", "subsample", "PROTOCOLS"]
