"""Run metrics over systems' records: per-example scores, aggregates, timings, mean ± SD over seeds.

:func:`evaluate` takes several systems (a repeated name = another seed of that system) and returns an
:class:`EvalResult`; :func:`score` is the one-call convenience for other modules (a predictions file or a list of
``Prediction`` → aggregates). A metric whose resource is missing is skipped (``strict``: raised); a metric that
fails on its option values (``ValueError`` / ``TypeError``) becomes a one-line ConfigError naming the metric.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from empathkit.errors import ConfigError, EmpathkitError, ResourceMissing
from empathkit.evaluation.presets import resolve_metrics
from empathkit.evaluation.readers import Record, read_predictions, records_from_predictions

log = logging.getLogger(__name__)


def to_batch(records: Sequence[Record]):
    """Records → the :class:`~empathkit.metrics.base.Batch` metrics see (``extra`` fields become ``Batch.extra``)."""
    from empathkit.metrics.base import Batch

    extra_keys = sorted({k for r in records for k in r.extra})
    extra = {k: [r.extra.get(k) for r in records] for k in extra_keys}
    return Batch(hypotheses=[r.hypothesis for r in records], references=[r.reference for r in records],
                 contexts=[r.context for r in records], emotions=[r.emotion for r in records],
                 ids=[r.id for r in records], extra=extra)


@dataclass
class SystemResult:
    name: str
    n: int
    aggregates: dict[str, float] = field(default_factory=dict)
    per_example: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # metric → wall-clock seconds
    cpu_timings: dict[str, float] = field(default_factory=dict)  # metric → CPU seconds of this process (all threads)
    family_timings: dict[str, float] = field(default_factory=dict)  # family → seconds
    skipped: dict[str, str] = field(default_factory=dict)  # metric → reason
    key_metric: dict[str, str] = field(default_factory=dict)  # aggregate key → metric that produced it
    records: list[Record] = field(default_factory=list, repr=False)
    source: str = ""
    reported: dict[str, float] = field(default_factory=dict)  # numbers the input file itself prints (PPL, acc, …)


@dataclass
class EvalResult:
    runs: list[SystemResult]
    metrics: list[tuple[str, dict[str, Any]]]

    def systems(self) -> list[str]:
        seen: list[str] = []
        for r in self.runs:
            if r.name not in seen:
                seen.append(r.name)
        return seen

    def by_system(self) -> dict[str, list[SystemResult]]:
        out: dict[str, list[SystemResult]] = {}
        for r in self.runs:
            out.setdefault(r.name, []).append(r)
        return out

    def keys(self) -> list[str]:
        seen: list[str] = []
        for r in self.runs:
            for k in r.aggregates:
                if k not in seen:
                    seen.append(k)
        return seen

    def lower_is_better(self) -> list[str]:
        """Aggregate keys produced by metrics registered with ``higher_is_better=False``."""
        from empathkit.metrics import METRICS

        km = {k: m for r in self.runs for k, m in r.key_metric.items()}
        return [k for k, m in km.items() if not METRICS.get(m).higher_is_better]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """system → key → {mean, sd, n_runs} (sd = sample SD over seeds, 0 for one run)."""
        from empathkit.metrics.stats import mean_sd

        out: dict[str, dict[str, dict[str, float]]] = {}
        for name, runs in self.by_system().items():
            out[name] = {}
            for k in self.keys():
                vals = [r.aggregates[k] for r in runs if k in r.aggregates]
                if vals:
                    m, s = mean_sd(vals)
                    out[name][k] = {"mean": m, "sd": s, "n_runs": len(vals)}
        return out


def _rejected(mname: str, opts: dict[str, Any], e: Exception) -> ConfigError:
    why = (str(e).strip().splitlines() or [type(e).__name__])[0]
    given = ", ".join(f"{k}={v!r}" for k, v in opts.items())
    return ConfigError(f"metric {mname!r} failed with options ({given}): {why}")


def evaluate_records(records: Sequence[Record], metrics: list[tuple[str, dict[str, Any]]], resources=None,
                     name: str = "system", strict: bool = False, progress: bool = False) -> SystemResult:
    """Run metrics over one system's records; a metric whose resource is missing is skipped (``strict``: raise)."""
    from empathkit.metrics import METRICS
    from empathkit.metrics.resources import as_resources

    res = as_resources(resources)
    batch = to_batch(records)
    batch.extra["_aggregates"] = {}  # metrics computed so far (the NLPCC composite reuses its components)
    out = SystemResult(name=name, n=len(records), records=list(records))
    it = metrics
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(metrics, desc=f"metrics ({name})", unit="metric")
    for mname, opts in it:
        spec = METRICS.get(mname)
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            r = spec.fn(batch, res, **opts)
        except ResourceMissing as e:
            if strict:
                raise
            out.skipped[mname] = str(e)
            log.warning("skipped metric %s: %s", mname, e)
            continue
        except EmpathkitError:
            raise
        except (ValueError, TypeError) as e:
            if opts:  # with options given, a ValueError / TypeError is (almost always) a bad option value
                raise _rejected(mname, opts, e) from None
            raise
        dt = time.perf_counter() - t0
        out.timings[mname] = dt
        out.cpu_timings[mname] = time.process_time() - c0
        out.family_timings[spec.family] = out.family_timings.get(spec.family, 0.0) + dt
        out.aggregates.update(r.aggregate)
        out.key_metric.update({k: mname for k in r.aggregate})
        batch.extra["_aggregates"].update(r.aggregate)
        if r.per_example:
            out.per_example.update(r.per_example)
        out.info[mname] = dict(r.info)
    return out


def evaluate(systems: Sequence[tuple[str, Sequence[Record]]] | Mapping[str, Sequence[Record]],
             metrics: Sequence[str] | str | None = None, preset: str | None = None, resources=None,
             metric_options: Mapping[str, Mapping[str, Any]] | None = None, strict: bool = False,
             progress: bool = True) -> EvalResult:
    """Evaluate several systems (``[(name, records)]``; a repeated name = another seed of that system)."""
    from empathkit.metrics.resources import as_resources

    items = list(systems.items()) if isinstance(systems, Mapping) else list(systems)
    chosen = resolve_metrics(metrics, preset, metric_options)
    res = as_resources(resources)
    runs = [evaluate_records(recs, chosen, res, name, strict, progress) for name, recs in items]
    return EvalResult(runs, chosen)


def score(predictions: str | Path | Sequence[Any], metrics: Sequence[str] | str | None = None,
          preset: str | None = "basic", resources=None, **options) -> dict[str, float]:
    """Convenience for other modules / benchmarks: a predictions file or a list of ``Prediction`` → aggregates."""
    recs = read_predictions(predictions) if isinstance(predictions, (str, Path)) else records_from_predictions(predictions)
    chosen = resolve_metrics(metrics, preset if not metrics else None, options.pop("metric_options", None))
    return evaluate_records(recs, chosen, resources, **options).aggregates
