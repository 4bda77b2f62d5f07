"""The evaluation API behind ``empathkit evaluate``: read system outputs, run metrics / presets, write reports.

- :mod:`~empathkit.evaluation.readers` — any system's outputs (JSONL, CSV/TSV, parallel text) → :class:`Record`
- :mod:`~empathkit.evaluation.presets` — :data:`PRESETS` of the papers, :func:`resolve_metrics` (names + options,
  checked against the metric signatures by :mod:`~empathkit.evaluation.options`)
- :mod:`~empathkit.evaluation.runner` — :func:`evaluate` / :func:`score` → :class:`EvalResult` (mean ± SD over seeds)
- :mod:`~empathkit.evaluation.report` — :func:`write_report`: per-example JSONL, aggregates.json, report.md / .html
- :mod:`~empathkit.evaluation.significance` — paired tests of every system against the first

Dependencies point one way: ``metrics`` know nothing of this package; ``reports`` and the CLI build on it.
"""

from empathkit.evaluation.presets import PRESETS, preset_metrics, resolve_metrics
from empathkit.evaluation.readers import Columns, Record, read_predictions, records_from_predictions
from empathkit.evaluation.report import table_rows, update_run_scores, write_report
from empathkit.evaluation.runner import EvalResult, SystemResult, evaluate, evaluate_records, score, to_batch
from empathkit.evaluation.significance import corpus_bootstrap, significance_tests, write_significance

__all__ = ["Columns", "Record", "read_predictions", "records_from_predictions", "PRESETS", "preset_metrics",
           "resolve_metrics", "EvalResult", "SystemResult", "evaluate", "evaluate_records", "score", "to_batch",
           "table_rows", "write_report", "update_run_scores", "significance_tests", "write_significance",
           "corpus_bootstrap"]
