"""What every annotator shares: the word tokenisation of a turn, the rejection marker and the two roles.

- :func:`words`: the tokens a turn is annotated on — NLTK's ``NLTKWordTokenizer`` with empathkit's regexp sentence
  split (``metrics.resources.nltk_tokenize``; punkt is not installed here), case kept, punctuation as tokens.
  Every annotator (lexicon, LLM, ERA) tags exactly these tokens, so their tags compare position by position.
- A *reason tagger* has ``annotator`` (``name@version``) and ``tag(tokens: list[list[str]]) -> list[list[str] |
  Rejected]`` (one ``<em>``/``<noem>`` per token); an *intent labeler* has ``annotator`` and ``label(texts) ->
  list[str | Rejected]``. :class:`Rejected` says why a turn got no annotation (an LLM reply that failed validation
  after its retries); the pipeline counts it and never writes the dialogue half-annotated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence


def words(text: str) -> list[str]:
    from empathkit.metrics.resources import nltk_tokenize

    return nltk_tokenize(text)


@dataclass(frozen=True)
class Rejected:
    reason: str  # e.g. "malformed-json", "wrong-tags", "timeout", "http-error"
    detail: str = ""


class ReasonTagger(Protocol):
    annotator: str

    def tag(self, tokens: Sequence[Sequence[str]]) -> list[list[str] | Rejected]: ...


class IntentLabeler(Protocol):
    annotator: str

    def label(self, texts: Sequence[str]) -> list[str | Rejected]: ...
