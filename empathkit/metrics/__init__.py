"""Metric registry: one module per family; importing this package registers every metric.

Add a family: write ``empathkit/metrics/<family>.py`` using ``@register_metric`` and add its name to ``FAMILIES``.
"""

from __future__ import annotations

import importlib

from empathkit.metrics.base import METRICS, Batch, MetricResult, MetricSpec, register_metric

FAMILIES: list[str] = []  # e.g. "lexical", "diversity", … (each module imported below registers its metrics)

for _fam in FAMILIES:
    importlib.import_module(f"empathkit.metrics.{_fam}")

__all__ = ["METRICS", "Batch", "MetricResult", "MetricSpec", "register_metric", "FAMILIES"]
