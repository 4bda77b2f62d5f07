"""Sentence trimming of replies cut by the token budget: a reply whose generation stopped at ``max_new_tokens``
(``finish_reason == "length"``) is cut back to its last complete sentence, so chat and serve never show
"…especially those".

Sentence boundaries come from NLTK's Punkt tokenizer (``PunktSentenceTokenizer`` with default parameters, which
needs no downloaded model, plus a few common abbreviations so "Dr. Smith" is not a boundary). A sentence is complete
when it ends with ``.``, ``!``, ``?`` or ``…``, optionally followed by closing quotes or brackets.

```python
trim_to_sentence("I'm so sorry. That must be hard. Did you talk to")    # Trim("I'm so sorry. That must be hard.", …)
complete_prefix("I'm sorry. Did you")                                    # "I'm sorry." (for streaming hold-back)
```

When not even the first sentence is complete, nothing is removed and :data:`ELLIPSIS` is appended instead, so the
cut is visible (an empty reply would be worse).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

ELLIPSIS = "…"
ABBREVIATIONS = ("dr", "mr", "mrs", "ms", "prof", "st", "vs", "etc", "e.g", "i.e", "approx", "jr", "sr")
_END = re.compile(r"""(?:[.!?\u2026]+)["'\u2019\u201d)\]]*$""")


@dataclass(frozen=True)
class Trim:
    """The trimmed ``text``; ``removed``: the dropped tail ("" when nothing was cut); ``marked``: no complete
    sentence existed, so :data:`ELLIPSIS` was appended instead."""

    text: str
    removed: str = ""
    marked: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.removed) or self.marked


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


def is_complete(sentence: str) -> bool:
    """Whether ``sentence`` ends like a finished sentence (terminal punctuation, closing quotes/brackets allowed)."""
    return bool(_END.search(sentence.rstrip()))


def complete_prefix(text: str) -> str:
    """``text`` up to the end of its last complete sentence ("" when there is none)."""
    end = 0
    for start, stop in _tokenizer().span_tokenize(text):
        if is_complete(text[start:stop]):
            end = stop
    return text[:end]


def trim_to_sentence(text: str) -> Trim:
    """``text`` cut after its last complete sentence (see the module docstring)."""
    stripped = text.rstrip()
    if not stripped or is_complete(stripped):
        return Trim(stripped)
    keep = complete_prefix(stripped)
    if not keep:
        return Trim(stripped + ELLIPSIS, marked=True)
    return Trim(keep, removed=stripped[len(keep):])


__all__ = ["ELLIPSIS", "Trim", "complete_prefix", "is_complete", "trim_to_sentence"]
