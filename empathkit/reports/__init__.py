"""Reports over evaluation results: tables (per-emotion breakdowns, systems side by side) and matplotlib plots
(bar / radar charts comparing systems, the EPITOME strategy-shift chart of ECG-LoRA Fig. 2).

- :mod:`empathkit.reports.tables` — per-emotion breakdown of any per-example metric, Markdown / HTML.
- :mod:`empathkit.reports.plots` — bar chart, radar chart, strategy-shift chart (Agg backend, PNG/SVG/PDF).
- :mod:`empathkit.reports.ecg` — ECG-LoRA training analyses (gate distributions, …; written with that method).

Inputs are :class:`empathkit.evaluation.EvalResult` objects or the files ``empathkit evaluate`` writes
(``aggregates.json``, ``per_example/<system>.jsonl``), so reports can be rebuilt without re-scoring.
"""
