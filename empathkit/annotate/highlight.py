"""Emotion-reason words of a user message with character offsets — what the web chat page highlights.

``reason_spans(text)`` → ``[{"start", "end", "text"}]`` (character offsets into ``text``, end exclusive; adjacent
``<em>`` words merged into one span) from the trained ERA when it exists, else from the offline lexicon tagger.
A span that starts or ends inside a word (NLTK splits "isn't" into "is" + "n't" and the tagger marks the negator
"n't") is widened to the whole word, so the page marks "isn't happy", never "is|n't happy".
``reason_metadata(text)`` adds the annotator (``{"spans": [...], "annotator": "era@1"}``);
:func:`message_reasons` is what the server puts in its ``empathkit`` metadata object (key ``reasons``): the same,
or ``None`` while the tagger is still loading (in a background thread: :func:`preload_tagger`; a request never
waits for ERA to load), when no tagger can be loaded (no ERA and no lexicon files) or when tagging fails — logged
once, never an error for the chat request, since the highlight is a decoration of the reply. The cost is bounded: only the first ``max_chars`` characters are
tagged (``"clipped": true`` says so), and ERA itself sees at most its ``max_length`` word pieces.

The tagger loads once per process, and tagging is serialised by a lock: the server calls this from worker
threads, and a Hugging Face fast tokenizer raises "Already borrowed" when two threads pad / truncate with it at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_LOAD_LOCK = threading.Lock()
_TAG_LOCK = threading.Lock()
_TAGGER: dict[str, Any] = {}
MAX_CHARS = 2000  # a chat message; longer ones are highlighted in their first MAX_CHARS characters


def default_tagger():
    """The trained ERA (``default_era_path()``) if present, else :class:`~empathkit.annotate.lexicon.LexiconTagger`."""
    with _LOAD_LOCK:
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


def _whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and text[start - 1].isalnum():
        start -= 1
    while end < len(text) and text[end].isalnum():
        end += 1
    return start, end


def reason_spans(text: str, tagger=None) -> list[dict[str, Any]]:
    from empathkit.annotate.base import words

    toks = words(text)
    if not toks:
        return []
    t = tagger or default_tagger()
    with _TAG_LOCK:
        tags = t.tag([toks])[0]
    spans: list[dict[str, Any]] = []
    for off, tag in zip(token_offsets(text, toks), tags, strict=True):
        if tag != "<em>" or off is None:
            continue
        start, end = _whole_words(text, *off)
        if spans and (start <= spans[-1]["end"] or text[spans[-1]["end"]:start].strip() == ""):
            spans[-1]["end"] = max(end, spans[-1]["end"])
        else:
            spans.append({"start": start, "end": end})
    for s in spans:
        s["text"] = text[s["start"]:s["end"]]
    return spans


def reason_metadata(text: str, tagger=None, max_chars: int = MAX_CHARS) -> dict[str, Any]:
    """``{"spans": [...], "annotator": "era@1" | "lexicon@1"}`` (+ ``"clipped": true`` when ``text`` is longer
    than ``max_chars``: spans cover its first ``max_chars`` characters only)."""
    t = tagger or default_tagger()
    out: dict[str, Any] = {"spans": reason_spans(text[:max_chars], t), "annotator": t.annotator}
    if len(text) > max_chars:
        out["clipped"] = True
    return out


_WARNED: set[str] = set()


def _warn_once(e: BaseException) -> None:
    cause = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if cause not in _WARNED:
        _WARNED.add(cause)
        log.warning("emotion-reason highlighting unavailable (%s)", cause)


def _load_in_background() -> None:
    try:
        default_tagger()
    except Exception as e:  # noqa: BLE001 - no tagger: the chat goes on without highlights
        _TAGGER["error"] = e
        _warn_once(e)


def preload_tagger() -> None:
    """Start loading the default tagger in a daemon thread (returns at once; idempotent). The server calls it at
    start-up so that the first chat request does not wait for ERA / the lexicon files."""
    if not _LOAD_LOCK.acquire(blocking=False):  # a load is under way (default_tagger holds the lock): never wait
        return
    try:
        if "t" in _TAGGER or "error" in _TAGGER or "loading" in _TAGGER:
            return
        _TAGGER["loading"] = threading.Thread(target=_load_in_background, daemon=True, name="empathkit-reasons")
    finally:
        _LOAD_LOCK.release()
    _TAGGER["loading"].start()


def message_reasons(text: str) -> dict[str, Any] | None:
    """:func:`reason_metadata` with the default tagger, for the chat server: never waits for the tagger to load
    (``None`` until it is loaded — the load starts on the first call) and never raises (``None``, logged once per
    cause, when no tagger can be loaded or tagging fails)."""
    t = _TAGGER.get("t")
    if t is None:
        preload_tagger()
        return None
    try:
        return reason_metadata(text, t)
    except Exception as e:  # noqa: BLE001 - the reply must not fail because its highlight did
        _warn_once(e)
        return None
