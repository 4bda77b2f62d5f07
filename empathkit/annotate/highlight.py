"""Emotion-reason words of a user message with character offsets — what the web chat page highlights.

``reason_spans(text)`` → ``[{"start", "end", "text"}]`` (character offsets into ``text``, adjacent ``<em>`` words
merged into one span) from the trained ERA when it exists, else from the offline lexicon tagger;
``reason_metadata(text)`` adds the annotator (``{"spans": [...], "annotator": "era@1"}``) for the server's
``empathkit`` metadata object. The tagger loads once per process (thread-safe).
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()
_TAGGER: dict[str, Any] = {}


def default_tagger():
    """The trained ERA (``default_era_path()``) if present, else :class:`~empathkit.annotate.lexicon.LexiconTagger`."""
    with _LOCK:
        if "t" not in _TAGGER:
            from empathkit.annotate.era import default_era_path

            if (default_era_path() / "head.safetensors").is_file():
                from empathkit.annotate.era import load_era
                from empathkit.annotate.pipeline import ERATagger

                _TAGGER["t"] = ERATagger(load_era())
            else:
                from empathkit.annotate.lexicon import LexiconTagger

                _TAGGER["t"] = LexiconTagger()
        return _TAGGER["t"]


def token_offsets(text: str, tokens: list[str]) -> list[tuple[int, int] | None]:
    """Where each token sits in ``text`` (sequential search; NLTK writes double quotes as `` / '', which map back
    to the quote character). ``None`` for a token not found."""
    out: list[tuple[int, int] | None] = []
    pos = 0
    for tok in tokens:
        cands = [tok] + (['"', "``", "''"] if tok in ("``", "''") else [])
        best = None
        for c in cands:
            i = text.find(c, pos)
            if i >= 0 and (best is None or i < best[0]):
                best = (i, i + len(c))
        out.append(best)
        if best:
            pos = best[1]
    return out


def reason_spans(text: str, tagger=None) -> list[dict[str, Any]]:
    from empathkit.annotate.base import words

    toks = words(text)
    if not toks:
        return []
    tags = (tagger or default_tagger()).tag([toks])[0]
    spans: list[dict[str, Any]] = []
    for off, tag in zip(token_offsets(text, toks), tags, strict=True):
        if tag != "<em>" or off is None:
            continue
        if spans and text[spans[-1]["end"]:off[0]].strip() == "":
            spans[-1]["end"] = off[1]
        else:
            spans.append({"start": off[0], "end": off[1]})
    for s in spans:
        s["text"] = text[s["start"]:s["end"]]
    return spans


def reason_metadata(text: str, tagger=None) -> dict[str, Any]:
    t = tagger or default_tagger()
    return {"spans": reason_spans(text, t), "annotator": t.annotator}
