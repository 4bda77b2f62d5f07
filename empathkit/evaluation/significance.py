"""Paired significance tests of every system against the first one (``empathkit evaluate --significance``).

Per-example keys: paired bootstrap and/or permutation test (:func:`empathkit.metrics.stats.compare_systems`), the
systems' examples paired by id. Corpus-level keys (corpus BLEU, Dist-n, …): :func:`corpus_bootstrap` recomputes the
metric on every resample (slow; ``corpus_resamples`` > 0). Results are reported as system − baseline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from empathkit.errors import ConfigError, DataError
from empathkit.evaluation.runner import EvalResult, to_batch
from empathkit.metrics.stats import TestResult, compare_systems, paired_bootstrap

TESTS = ("bootstrap", "permutation", "both")


def corpus_bootstrap(metric: str, key: str, records_a: Sequence, records_b: Sequence, n_resamples: int = 200,
                     seed: int = 0, resources=None, **options) -> TestResult:
    """Paired bootstrap of a corpus-level metric (e.g. corpus BLEU, corpus Dist-n): the metric is recomputed on both
    systems' resampled examples (records paired by position) ``n_resamples`` times — slow for expensive metrics."""
    from empathkit.metrics import METRICS

    if len(records_a) != len(records_b):
        raise ValueError(f"systems have {len(records_a)} and {len(records_b)} examples; align them by id first")
    fn = METRICS.get(metric).fn

    def corpus_fn(idx):
        a = fn(to_batch([records_a[i] for i in idx]), resources, **options).aggregate[key]
        b = fn(to_batch([records_b[i] for i in idx]), resources, **options).aggregate[key]
        return a, b

    zeros = np.zeros(len(records_a))
    return paired_bootstrap(zeros, zeros, n_resamples, seed, key, corpus_fn=corpus_fn)


def _as_system_minus_baseline(t: TestResult, **fields) -> dict:
    d = t.to_json()
    d.update(fields, mean_a=t.mean_b, mean_b=t.mean_a, delta=-t.delta,
             ci_low=None if t.ci_high is None else -t.ci_high, ci_high=None if t.ci_low is None else -t.ci_low)
    return d


def significance_tests(result: EvalResult, test: str = "both", resamples: int = 1000, seed: int = 0,
                       corpus_resamples: int = 0) -> list[dict]:
    """Every system's first run against the first system's first run, paired by example id."""
    if test not in TESTS:
        raise ConfigError(f"unknown test {test!r} ({' | '.join(TESTS)})")
    if len(result.runs) < 2:
        raise ConfigError("significance tests need at least two systems")
    base = result.runs[0]
    seen = {base.name}
    out = []
    for run in result.runs[1:]:
        if run.name in seen:
            continue
        seen.add(run.name)
        pos = {rec.id: i for i, rec in enumerate(run.records)}
        missing = [rec.id for rec in base.records if rec.id not in pos]
        if missing:
            raise DataError(f"system {run.name!r} lacks example id {missing[0]!r} of {base.name!r}: cannot pair "
                            f"({len(missing)} missing)", file=run.source or None)
        order = [pos[rec.id] for rec in base.records]
        per_b = {k: [v[i] for i in order] for k, v in run.per_example.items()}
        for t in compare_systems(base.per_example, per_b, test=test, n_resamples=resamples, seed=seed):
            out.append(_as_system_minus_baseline(t, system=run.name, baseline=base.name))
        if corpus_resamples:
            recs_b = [run.records[i] for i in order]
            for key, metric in base.key_metric.items():
                if key in base.per_example or key not in run.aggregates:
                    continue
                opts = dict(next((o for m, o in result.metrics if m == metric), {}))
                t = corpus_bootstrap(metric, key, base.records, recs_b, corpus_resamples, seed, **opts)
                out.append(_as_system_minus_baseline(t, test="corpus-bootstrap", system=run.name, baseline=base.name))
    return out


def significance_table(tests: Sequence[dict]) -> str:
    """Markdown: system, baseline, metric, test, Δ, p (``*`` = p < 0.05)."""
    from empathkit.reports.tables import markdown_table

    rows = [[t["system"], t["baseline"], t["metric"], t["test"], f"{t['delta']:+.4f}",
             f"{t['p_value']:.4g}{' *' if t['p_value'] < 0.05 else ''}"] for t in tests]
    return markdown_table(["system", "vs", "metric", "test", "Δ", "p"], rows)


def write_significance(result: EvalResult, tests: Sequence[dict], out_dir: str | Path) -> str:
    """``significance.json`` + a section appended to ``report.md``; returns the Markdown table."""
    out = Path(out_dir)
    (out / "significance.json").write_text(json.dumps(list(tests), indent=2), encoding="utf-8")
    table = significance_table(tests)
    with (out / "report.md").open("a", encoding="utf-8") as f:
        f.write("\n## Significance (vs " + result.runs[0].name + ", * = p < 0.05)\n\n" + table + "\n")
    return table
