"""Reports over evaluation results and runs: tables, matplotlib plots, the ECG-LoRA run report.

- :mod:`empathkit.reports.tables` — the one Markdown / HTML table writer (:func:`~empathkit.reports.tables.markdown_table`,
  :func:`~empathkit.reports.tables.html_table`) and per-emotion breakdowns of any per-example metric.
- :mod:`empathkit.reports.plots` — bar chart, radar chart, strategy-shift chart (Agg backend, PNG/SVG/PDF).
- :mod:`empathkit.reports.ecg` — ECG-LoRA training analyses (gate distributions, …; written with that method).
- :mod:`empathkit.reports.run_report` — :func:`~empathkit.reports.run_report.make_report`: figures + Markdown summary
  over trained run directories (``empathkit report``).

Inputs are :class:`empathkit.evaluation.EvalResult` objects or the files ``empathkit evaluate`` writes
(``aggregates.json``, ``per_example/<system>.jsonl``), so reports can be rebuilt without re-scoring.
"""
