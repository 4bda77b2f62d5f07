"""The metric interface and registry.

A metric is a function over a :class:`Batch` (hypotheses, references, contexts, emotions, …) that returns a
:class:`MetricResult` (per-example scores, where the metric has them, plus corpus-level aggregates). Each metric
family lives in one module and registers its named variants with ``@register_metric(...)``; every metric has a
card in ``docs/metrics/<name>.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from empathkit.registry import Registry


@dataclass
class Batch:
    """What a metric sees. ``contexts[i]`` is the list of previous turns (oldest first) of example ``i``."""

    hypotheses: Sequence[str]
    references: Sequence[str]
    contexts: Sequence[Sequence[str]] = ()
    emotions: Sequence[str | None] = ()  # gold context emotion per example (ED label) when known
    ids: Sequence[str] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. predicted emotions, intent labels, seeds

    def __post_init__(self):
        n = len(self.hypotheses)
        if len(self.references) != n:
            raise ValueError(f"{n} hypotheses but {len(self.references)} references")
        if not self.contexts:
            self.contexts = [[] for _ in range(n)]
        if not self.emotions:
            self.emotions = [None] * n
        if not self.ids:
            self.ids = [str(i) for i in range(n)]


@dataclass
class MetricResult:
    name: str
    aggregate: dict[str, float]  # e.g. {"bleu-4": 1.23} — keys are the reported column names
    per_example: dict[str, list[float]] | None = None  # same keys where the metric is per-sentence
    info: dict[str, Any] = field(default_factory=dict)  # which variant ran, tokeniser, encoder, warnings


@dataclass
class MetricSpec:
    name: str
    fn: Callable[..., MetricResult]  # fn(batch, resources, **options) -> MetricResult
    family: str
    higher_is_better: bool = True
    description: str = ""


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(name: str, family: str, higher_is_better: bool = True, description: str = ""):
    """Decorator: ``@register_metric("bleu-moses", family="lexical")`` over ``fn(batch, resources, **opts)``."""

    def deco(fn):
        METRICS.register(name, MetricSpec(name, fn, family, higher_is_better, description))
        return fn

    return deco
