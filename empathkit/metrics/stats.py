"""Significance tests between two systems and mean ± SD over seeds.

- :func:`paired_bootstrap` — paired bootstrap resampling (Koehn 2004) on per-example scores, or on a corpus
  metric recomputed on every resample (``corpus_fn``). Hand-written (numpy), because the resampling must keep the
  two systems' examples paired and must be able to recompute a corpus-level metric; the confidence interval of the
  mean difference is checked against ``scipy.stats.bootstrap`` in the tests.
- :func:`permutation_test` — paired (sign-flip) permutation test of the mean difference, via
  ``scipy.stats.permutation_test(permutation_type="samples")`` (the EmPO papers' p-values are permutation tests).
- :func:`mean_sd` — mean and sample SD (``ddof=1``) over runs with different seeds (EmPO Table 2).

Plain numbers in, numbers out: this module knows nothing of records or the evaluation runner (the bootstrap of a
corpus metric over records is :func:`empathkit.evaluation.significance.corpus_bootstrap`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass
class TestResult:
    test: str
    metric: str
    mean_a: float
    mean_b: float
    delta: float  # mean_a - mean_b (or corpus_a - corpus_b)
    p_value: float  # two-sided unless stated
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    resamples: int = 0
    higher_is_better: bool = True

    def to_json(self) -> dict:
        return asdict(self)

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def _pair(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired tests need two equally long 1-D score lists, got {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError("paired tests need at least 2 examples")
    return a, b


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_resamples: int = 1000, seed: int = 0,
                     metric: str = "", corpus_fn: Callable[[np.ndarray], tuple[float, float]] | None = None,
                     confidence: float = 0.95) -> TestResult:
    """Paired bootstrap: resample example indices with replacement, recompute both systems' scores.

    Per-example mode (default): the statistic is the mean of each list. Corpus mode: ``corpus_fn(indices)`` returns
    ``(score_a, score_b)`` on the resampled examples (e.g. corpus BLEU of both systems on those indices); ``a`` and
    ``b`` then only give the example count. The p-value is two-sided: twice the share of resamples whose difference
    has the opposite sign of the observed one (capped at 1), as in Koehn (2004) / Berg-Kirkpatrick et al. (2012).
    """
    a, b = _pair(a, b)
    n = len(a)
    rng = np.random.default_rng(seed)
    if corpus_fn is None:
        obs_a, obs_b = float(a.mean()), float(b.mean())
    else:
        obs_a, obs_b = corpus_fn(np.arange(n))
    obs = obs_a - obs_b
    deltas = np.empty(n_resamples)
    for k in range(n_resamples):
        idx = rng.integers(0, n, n)
        if corpus_fn is None:
            deltas[k] = a[idx].mean() - b[idx].mean()
        else:
            sa, sb = corpus_fn(idx)
            deltas[k] = sa - sb
    if obs == 0:
        p = 1.0
    else:
        opposite = np.sum(deltas <= 0) if obs > 0 else np.sum(deltas >= 0)
        p = min(1.0, 2.0 * (opposite + 1) / (n_resamples + 1))
    lo, hi = np.quantile(deltas, [(1 - confidence) / 2, 1 - (1 - confidence) / 2])
    return TestResult("paired-bootstrap", metric, float(obs_a), float(obs_b), float(obs), float(p), float(lo),
                      float(hi), n, n_resamples)


def permutation_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10000, seed: int = 0,
                     metric: str = "", alternative: str = "two-sided") -> TestResult:
    """Paired permutation (sign-flip) test of the mean difference, ``scipy.stats.permutation_test``."""
    from scipy.stats import permutation_test as _perm

    a, b = _pair(a, b)

    def stat(x, y, axis=-1):
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    res = _perm((a, b), stat, permutation_type="samples", n_resamples=n_resamples, alternative=alternative,
                random_state=np.random.default_rng(seed), vectorized=True)
    return TestResult("permutation", metric, float(a.mean()), float(b.mean()), float(a.mean() - b.mean()),
                      float(res.pvalue), None, None, len(a), n_resamples)


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single run)."""
    xs = [float(v) for v in values]
    if not xs:
        return math.nan, math.nan
    m = sum(xs) / len(xs)
    if len(xs) == 1:
        return m, 0.0
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def compare_systems(per_a: dict[str, Sequence[float]], per_b: dict[str, Sequence[float]], keys: Sequence[str] | None = None,
                    test: str = "both", n_resamples: int = 1000, seed: int = 0) -> list[TestResult]:
    """Run the tests on every per-example key both systems have (paired by position)."""
    keys = [k for k in (keys or per_a.keys()) if k in per_a and k in per_b]
    out = []
    for k in keys:
        if len(per_a[k]) != len(per_b[k]):
            raise ValueError(f"{k}: systems have {len(per_a[k])} and {len(per_b[k])} examples; align them by id first")
        if test in ("bootstrap", "both"):
            out.append(paired_bootstrap(per_a[k], per_b[k], n_resamples, seed, k))
        if test in ("permutation", "both"):
            out.append(permutation_test(per_a[k], per_b[k], max(n_resamples, 1000), seed, k))
    return out
