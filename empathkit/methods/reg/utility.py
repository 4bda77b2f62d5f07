"""REG's utility F (Eq. 3): the token-level metrics that score a G1 decode against the gold response.

**Utility F** (Eq. 3, "token-level metrics, e.g. ROUGE-L"; Table 2 ablates BLEU, F1 and ROUGE-L, so full REG
combines the three): ``F = Σ_m w_m · m(hyp, ref) / Σ_m w_m`` over

- ``rouge-l`` — rouge-score's ROUGE-L F-measure (its tokeniser: lower-case, non-alphanumerics → spaces; Porter
  stemming, as the ``rouge`` metric of ``metrics/lexical.py``), in [0, 1];
- ``bleu`` — sacrebleu sentence BLEU (13a tokeniser, case-sensitive, up to 4-grams, ``effective_order=True``,
  ``smooth_method="exp"``: sacrebleu's ``sentence_bleu`` defaults, i.e. NIST geometric smoothing of zero n-gram
  counts), divided by 100 to lie in [0, 1];
- ``f1`` — unigram F1 of the multisets of tokens after ParlAI's ``normalize_answer`` (lower-case, punctuation →
  spaces, the articles a / an / the removed, whitespace split), the "F1" of dialogue work (ParlAI, KILT); 0 when
  either side is empty.

The weights are normalised (``F`` stays in [0, 1]) so that an ablation — a weight set to 0, e.g. ``w/o BLEU`` =
``{rouge-l: 1, bleu: 0, f1: 1}`` (:data:`UTILITY_PRESETS`) — removes a signal without changing how sharp
``softmax(F / τ)`` is. Metrics of weight 0 are not computed.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Callable, Mapping, Sequence

import torch

from empathkit.errors import ConfigError
from empathkit.registry import Registry

# ================================================================================================ utility F (Eq. 3)
@functools.lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure (rouge-score, Porter stemming), in [0, 1]."""
    return float(_rouge_scorer().score(reference, hypothesis)["rougeL"].fmeasure)


@functools.lru_cache(maxsize=4)
def _bleu(max_order: int):
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="13a", lowercase=False, smooth_method="exp", effective_order=True, max_ngram_order=max_order)


def sentence_bleu(hypothesis: str, reference: str, max_order: int = 4) -> float:
    """Sentence BLEU (sacrebleu, 13a, exp smoothing, effective order) / 100, in [0, 1]; 0 for an empty hypothesis."""
    if not hypothesis.strip():
        return 0.0
    return float(_bleu(max_order).sentence_score(hypothesis, [reference]).score) / 100.0


_PUNCT = re.compile(r"[!\"#$%&()*+,\-./:;<=>?@\[\]\\^`{|}~_']")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def f1_tokens(text: str) -> list[str]:
    """ParlAI's ``normalize_answer`` tokens: lower-case, punctuation → space, articles removed, whitespace split."""
    return _ARTICLES.sub(" ", _PUNCT.sub(" ", text.lower())).split()


def unigram_f1(hypothesis: str, reference: str) -> float:
    """Unigram F1 between the token multisets of :func:`f1_tokens`, in [0, 1]; 0 when either side is empty."""
    h, r = f1_tokens(hypothesis), f1_tokens(reference)
    common = sum((Counter(h) & Counter(r)).values())
    if not h or not r or common == 0:
        return 0.0
    p, rec = common / len(h), common / len(r)
    return 2 * p * rec / (p + rec)


UTILITIES: Registry[Callable[[str, str], float]] = Registry("REG utility metric")
UTILITIES.register("rouge-l", rouge_l)
UTILITIES.register("bleu", sentence_bleu)
UTILITIES.register("f1", unigram_f1)

UTILITY_PRESETS: dict[str, dict[str, float]] = {
    "reg": {"rouge-l": 1.0, "bleu": 1.0, "f1": 1.0},  # the full model of Table 2
    "rouge-l": {"rouge-l": 1.0, "bleu": 0.0, "f1": 0.0},  # Eq. 3's example metric alone
    "w/o-bleu": {"rouge-l": 1.0, "bleu": 0.0, "f1": 1.0},
    "w/o-f1": {"rouge-l": 1.0, "bleu": 1.0, "f1": 0.0},
    "w/o-rouge-l": {"rouge-l": 0.0, "bleu": 1.0, "f1": 1.0},
}


def utility_weights(spec: str | Mapping[str, float] | None) -> dict[str, float]:
    """Weights from a preset name (:data:`UTILITY_PRESETS`), one metric's name (weight 1, the others 0) or a
    ``{metric: weight}`` mapping (missing metrics: 0).
    Unknown metric names, negative weights and all-zero weights raise :class:`ConfigError`."""
    if spec is None:
        spec = "reg"
    if isinstance(spec, str):
        if spec in UTILITY_PRESETS:
            spec = UTILITY_PRESETS[spec]
        elif spec in UTILITIES:  # one metric alone
            spec = {spec: 1.0}
        else:
            raise ConfigError(f"unknown utility preset {spec!r}; known: {', '.join(UTILITY_PRESETS)} or one of "
                              f"{', '.join(UTILITIES.names())}")
    out = {name: 0.0 for name in UTILITIES.names()}
    for name, w in spec.items():
        if name not in UTILITIES:
            raise ConfigError(f"unknown utility metric {name!r}; known: {', '.join(UTILITIES.names())}")
        if w < 0:
            raise ConfigError(f"utility weight of {name!r} is {w}; weights must be >= 0")
        out[name] = float(w)
    if sum(out.values()) <= 0:
        raise ConfigError("utility weights are all 0: keep at least one of " + ", ".join(UTILITIES.names()))
    return out


class Utility:
    """``F(hyp, ref) = Σ_m w_m · m(hyp, ref) / Σ_m w_m`` (``normalize=False``: the plain weighted sum).
    See the module docstring for each metric's tokenisation and smoothing."""

    def __init__(self, weights: str | Mapping[str, float] | None = None, normalize: bool = True):
        self.weights = utility_weights(weights)
        self.normalize = normalize
        self._total = sum(self.weights.values()) if normalize else 1.0

    def components(self, hypothesis: str, reference: str) -> dict[str, float]:
        """Each metric of non-zero weight on its own."""
        return {m: UTILITIES.get(m)(hypothesis, reference) for m, w in self.weights.items() if w > 0}

    def __call__(self, hypothesis: str, reference: str) -> float:
        c = self.components(hypothesis, reference)
        return sum(self.weights[m] * v for m, v in c.items()) / self._total

    def matrix(self, decodes: Sequence[Sequence[str]], references: Sequence[str]) -> torch.Tensor:
        """``(B, K)`` utilities of each query's K decodes against its gold response (rows must have equal K)."""
        if len(decodes) != len(references):
            raise ValueError(f"{len(decodes)} rows of decodes for {len(references)} references")
        if len({len(r) for r in decodes}) > 1:
            raise ValueError("every row needs the same number of candidates (pad and pass a mask)")
        return torch.tensor([[self(h, ref) for h in row] for row, ref in zip(decodes, references)],
                            dtype=torch.float32)
