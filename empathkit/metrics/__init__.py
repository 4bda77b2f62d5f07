"""Metric registry: one module per family; importing this package registers every metric.

Add a family: write ``empathkit/metrics/<family>.py`` using ``@register_metric`` and add its name to ``FAMILIES``.
Presets (named metric lists such as ``basic``) live in :mod:`empathkit.evaluation`.
"""

from __future__ import annotations

import importlib
import importlib.util

from empathkit.metrics.base import METRICS, Batch, MetricResult, MetricSpec, register_metric

# families that always exist
FAMILIES: list[str] = ["lexical", "diversity", "semantic", "lexicon", "fluency", "judge", "retrieval"]
# classifier-based families (written separately): registered only when the module exists; a module that exists but
# fails to import still raises (importlib.util.find_spec only answers "is it there").
for _opt in ("emotion", "epitome", "intent"):
    if importlib.util.find_spec(f"empathkit.metrics.{_opt}") is not None:
        FAMILIES.append(_opt)

for _fam in FAMILIES:
    if importlib.util.find_spec(f"empathkit.metrics.{_fam}") is not None:
        importlib.import_module(f"empathkit.metrics.{_fam}")

__all__ = ["METRICS", "Batch", "MetricResult", "MetricSpec", "register_metric", "FAMILIES"]
