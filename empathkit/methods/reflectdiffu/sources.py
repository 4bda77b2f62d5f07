"""The external signals ReflectDiffu reads, each behind a small protocol so tests plug in fakes:

- :class:`ReasonSource` — the Emotion Reason Annotator (ERA, ``empathkit.annotate.era``): ``tag(list of word
  lists)`` gives ``<em>/<noem>`` per word, ``reason_states(list of word lists)`` the reasoning representations h~
  (B, W, dim) and their mask. :class:`HashReasons` is a seeded stand-in (no learning, no lexicon) for tests and for runs without
  a trained ERA (``reason_source: hash``).
- :class:`IntentPrior` — p_intent of Eq. 5 (``labels`` + ``predict_proba(texts)``): empathkit's ``intent``
  classifier, or :class:`UniformPrior`.
- :func:`vader_compounds` — the VADER compound score that votes for an expert (Eq. 4).
- :func:`intent_refer_map` — Intent_refer (Table 1), from ``empathkit.annotate.intents``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from empathkit.classifiers.data import INTENT_LABELS

INTENTS: tuple[str, ...] = tuple(INTENT_LABELS)  # the 9 EmpatheticIntents labels (8 intents + neutral)
EM, NOEM = "<em>", "<noem>"


@runtime_checkable
class ReasonSource(Protocol):
    dim: int

    def tag(self, words: Sequence[Sequence[str]]) -> list[list[str]]: ...

    def reason_states(self, words: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class IntentPrior(Protocol):
    labels: Sequence[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def _word_seed(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") % (2 ** 63)


class HashReasons:
    """A deterministic fake ERA: h~ of a word = a unit vector seeded by its text (context-free); ``tag`` marks no
    word (every word ``<noem>``). Only for tests and runs without a trained ERA — it carries no emotion knowledge."""

    def __init__(self, dim: int = 32):
        self.dim = dim
        self._cache: dict[str, torch.Tensor] = {}

    def _vec(self, w: str) -> torch.Tensor:
        if w not in self._cache:
            v = torch.randn(self.dim, generator=torch.Generator().manual_seed(_word_seed(w)))
            self._cache[w] = v / v.norm()
        return self._cache[w]

    def tag(self, words: Sequence[Sequence[str]]) -> list[list[str]]:
        return [[NOEM] * len(ws) for ws in words]

    def reason_states(self, words: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        n = max((len(ws) for ws in words), default=0)
        out = torch.zeros(len(words), n, self.dim)
        mask = torch.zeros(len(words), n, dtype=torch.bool)
        for i, ws in enumerate(words):
            for j, w in enumerate(ws):
                out[i, j] = self._vec(w)
                mask[i, j] = True
        return out, mask


def load_reason_source(kind: str, path: str | None = None) -> ReasonSource:
    """``era``: the trained ERA (``empathkit.annotate.era.model.ERA.load``); ``hash``: :class:`HashReasons`."""
    if kind == "hash":
        return HashReasons()
    from empathkit.errors import ResourceMissing

    try:
        from empathkit.annotate.era import load_era
    except ImportError:
        raise ResourceMissing("reason_source 'era' needs empathkit.annotate.era (the ERA tagger), which is not in "
                              "this install; use model.reason_source=hash or model.use_era=false") from None
    return load_era(path)  # raises ResourceMissing naming how to train it


class UniformPrior:
    labels = INTENTS

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return np.full((len(texts), len(INTENTS)), 1.0 / len(INTENTS), dtype=np.float32)


class ClassifierPrior:
    """empathkit's ``intent`` classifier with its columns reordered to :data:`INTENTS`."""

    def __init__(self, clf):
        missing = set(INTENTS) - set(clf.labels)
        if missing:
            from empathkit.errors import ConfigError

            raise ConfigError(f"intent classifier lacks the intents {sorted(missing)}")
        self.clf, self.labels = clf, INTENTS
        self._cols = [list(clf.labels).index(x) for x in INTENTS]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(INTENTS)), dtype=np.float32)
        p = np.asarray(self.clf.predict_proba(list(texts), batch_size=64), dtype=np.float32)[:, self._cols]
        return p / np.clip(p.sum(1, keepdims=True), 1e-8, None)


def load_intent_prior(kind: str, source: str | None = None) -> IntentPrior:
    if kind == "uniform":
        return UniformPrior()
    from empathkit.classifiers import load_classifier

    return ClassifierPrior(load_classifier("intent", source))


_VADER = None


def vader_compounds(texts: Sequence[str]) -> list[float]:
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    return [float(_VADER.polarity_scores(t)["compound"]) for t in texts]


def intent_refer_map(name: str = "paper-table1", n: int = 3) -> dict[str, list[str]]:
    """emotion → its group's Intent_refer (``empathkit.annotate.intents.intent_map``)."""
    try:
        from empathkit.annotate.intents import intent_map
    except ImportError:
        from empathkit.errors import ResourceMissing

        raise ResourceMissing("Intent_refer needs empathkit.annotate.intents (the intent map), which is not in this "
                              "install") from None
    m = intent_map(name, n=n)
    bad = sorted({i for v in m.values() for i in v} - set(INTENTS))
    if bad:
        from empathkit.errors import ConfigError

        raise ConfigError(f"intent map {name!r} names unknown intents {bad}; expected some of {list(INTENTS)}")
    return {e: list(v) for e, v in m.items()}
