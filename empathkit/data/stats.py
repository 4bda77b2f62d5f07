"""``empathkit data stats``: per-split conversation / example counts and per-emotion counts."""

from __future__ import annotations

from collections import Counter

from empathkit.data import load_dialogues
from empathkit.data.protocols import to_examples


def compute_stats(source, splits=("train", "valid", "test"), protocol: str = "every-listener") -> dict:
    out = {}
    for split in splits:
        dialogues = load_dialogues(source, split)
        exs = to_examples(dialogues, protocol)
        out[split] = {
            "conversations": len(dialogues),
            "utterances": sum(len(d.turns) for d in dialogues),
            "examples": len(exs),
            "protocol": protocol,
            "emotions": dict(sorted(Counter(d.emotion for d in dialogues).items())),
        }
    return out
