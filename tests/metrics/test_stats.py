"""Paired bootstrap, permutation test and mean ± SD."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from empathkit.metrics.stats import compare_systems, mean_sd, paired_bootstrap, permutation_test


def test_mean_sd_hand_computed():
    assert mean_sd([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, np.std([1, 2, 3, 4], ddof=1)))
    assert mean_sd([5.0]) == (5.0, 0.0)


def test_bootstrap_detects_clear_difference_and_not_identical_systems():
    rng = np.random.default_rng(1)
    a = rng.normal(0.6, 0.1, 200)
    b = a - 0.05 + rng.normal(0, 0.02, 200)
    r = paired_bootstrap(a, b, 1000, seed=0, metric="x")
    assert r.p_value < 0.01 and r.delta == pytest.approx(np.mean(a - b))
    assert r.ci_low < r.delta < r.ci_high
    same = paired_bootstrap(a, a.copy(), 200)
    assert same.p_value == 1.0


def test_bootstrap_ci_agrees_with_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(2)
    a, b = rng.normal(0.5, 0.2, 300), rng.normal(0.45, 0.2, 300)
    mine = paired_bootstrap(a, b, 3000, seed=0)
    ref = bootstrap((a - b,), np.mean, n_resamples=3000, method="percentile", random_state=0).confidence_interval
    assert mine.ci_low == pytest.approx(ref.low, abs=0.01) and mine.ci_high == pytest.approx(ref.high, abs=0.01)


def test_bootstrap_corpus_mode_recomputes_metric():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 0.0, 1.0])
    r = paired_bootstrap(a, b, 200, corpus_fn=lambda idx: (a[idx].sum(), b[idx].sum()))
    assert r.mean_a == 10.0 and r.mean_b == 1.0 and r.delta == 9.0


def test_permutation_matches_exact_sign_flip_enumeration():
    a = np.array([0.9, 0.8, 0.75, 0.6, 0.7, 0.85, 0.5, 0.65])
    b = np.array([0.7, 0.75, 0.7, 0.62, 0.5, 0.6, 0.55, 0.4])
    d = a - b
    obs = abs(d.mean())
    flips = [np.mean(d * np.array(s)) for s in itertools.product([1, -1], repeat=len(d))]
    exact = np.mean([abs(f) >= obs - 1e-12 for f in flips])
    r = permutation_test(a, b, n_resamples=10000)
    assert r.p_value == pytest.approx(exact)


def test_compare_systems_requires_alignment():
    res = compare_systems({"m": [1, 2, 3]}, {"m": [0, 1, 2]}, n_resamples=100)
    assert {t.test for t in res} == {"paired-bootstrap", "permutation"}
    with pytest.raises(ValueError, match="align"):
        compare_systems({"m": [1, 2, 3]}, {"m": [0, 1]})


def test_corpus_bootstrap_recomputes_corpus_dist():
    from empathkit.evaluation import Record
    from empathkit.evaluation.significance import corpus_bootstrap

    a = [Record(str(i), f"word{i} other{i} more{i}", "r") for i in range(20)]
    b = [Record(str(i), "i am sorry", "r") for i in range(20)]
    r = corpus_bootstrap("dist", "dist-1", a, b, n_resamples=50)
    assert r.mean_a == pytest.approx(100.0) and r.mean_b == pytest.approx(100 * 3 / 60)
    assert r.p_value < 0.05 and r.test == "paired-bootstrap"
