"""Hugging Face dataset ids (online users): the ``empathetic_dialogues`` row layout or the JSONL dialogue layout."""

from __future__ import annotations

from empathkit.data.ed import decode_text, rows_to_dialogues
from empathkit.data.jsonl import parse_dialogue
from empathkit.errors import ResourceMissing
from empathkit.types import Dialogue

_HF_SPLIT = {"valid": "validation"}


def read_hf(dataset_id: str, split: str) -> list[Dialogue]:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover
        raise ResourceMissing("reading a Hugging Face dataset needs the 'datasets' package") from e
    try:
        ds = datasets.load_dataset(dataset_id, split=_HF_SPLIT.get(split, split))
    except Exception as e:  # network, missing dataset, missing split: say which
        raise ResourceMissing(f"could not load Hugging Face dataset {dataset_id!r} split {split!r}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                              "(offline? use a local folder or JSONL file instead)") from None
    source = f"hf:{dataset_id}/{split}"
    cols = set(ds.column_names)
    if {"conv_id", "utterance_idx", "context", "prompt", "utterance"} <= cols:
        rows = ((i + 1, {k: str(r[k]) for k in ("conv_id", "utterance_idx", "context", "prompt", "utterance")})
                for i, r in enumerate(ds))
        return rows_to_dialogues(rows, source, split)
    if {"id", "emotion", "turns"} <= cols:
        return [parse_dialogue(dict(r), source, i + 1) for i, r in enumerate(ds)]
    raise ResourceMissing(f"{source}: unrecognised columns {sorted(cols)}; expected the ED row layout "
                          "(conv_id, utterance_idx, context, prompt, utterance) or the JSONL dialogue layout")


__all__ = ["read_hf", "decode_text"]
