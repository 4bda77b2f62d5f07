"""Write an evaluation's outputs: per-example JSONL, ``aggregates.json``, ``report.md``, ``report.html``.

Layout of ``out_dir`` (:func:`write_report`): ``per_example/<system>[.run<k>].jsonl`` (one row per example: id,
emotion, hypothesis, reference, the per-example scores, and ``annotations`` when the predictions carry them),
``aggregates.json`` (metrics + options, mean ± SD summary, every run's aggregates, info, timings, skipped metrics),
``report.md`` / ``report.html`` (systems side by side; the same system several times = seeds → mean ± SD), and
``config.yaml`` + ``versions.json`` + ``seed`` (via :func:`empathkit.runs.save_run_meta`). Optional sections:
per-emotion breakdowns and bar / radar plots (``by_emotion``, ``plots``).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Sequence

from empathkit.evaluation.runner import EvalResult
from empathkit.reports.tables import html_table, markdown_table

NOTE_INFO_KEYS = ("variant", "implementation", "scale", "tokenize", "encoder", "model", "num_layers", "rescaled")
_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
          "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}")


def _fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    ax = abs(x)
    if ax >= 100:
        return f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def table_rows(result: EvalResult) -> tuple[list[str], list[list[str]]]:
    """Header + one row per system (mean ± SD when a system has several runs)."""
    summ = result.summary()
    keys = result.keys()
    rows = []
    for name in result.systems():
        row = [name]
        for k in keys:
            v = summ[name].get(k)
            if v is None:
                row.append("–")
            elif v["n_runs"] > 1:
                row.append(f"{_fmt(v['mean'])} ± {_fmt(v['sd'])}")
            else:
                row.append(_fmt(v["mean"]))
        rows.append(row)
    return ["system"] + keys, rows


def metric_notes(result: EvalResult) -> list[str]:
    """One Markdown bullet per metric: family, description and the variant details it reported."""
    from empathkit.metrics import METRICS

    notes = []
    for mname, _ in result.metrics:
        spec = METRICS.get(mname)
        info = next((r.info[mname] for r in result.runs if mname in r.info), {})
        extra = ", ".join(f"{k}={v}" for k, v in info.items() if k in NOTE_INFO_KEYS)
        notes.append(f"- `{mname}` ({spec.family}): {spec.description}" + (f" — {extra}" if extra else ""))
    return notes


def _per_example_rows(run) -> list[dict[str, Any]]:
    rows = []
    for i, rec in enumerate(run.records):
        row = {"id": rec.id, "emotion": rec.emotion, "hypothesis": rec.hypothesis, "reference": rec.reference}
        row.update({key: vals[i] for key, vals in run.per_example.items() if i < len(vals)})
        if rec.annotations:
            row["annotations"] = rec.annotations
        rows.append(_finite(row))
    return rows


def _html_page(result: EvalResult, header: list[str], rows: list[list[str]], skipped: dict[str, str]) -> str:
    notes = "".join(f"<li>{html.escape(n[2:])}</li>" for n in metric_notes(result))
    skip = ("<h2>Skipped</h2><ul>" + "".join(f"<li><code>{html.escape(m)}</code>: {html.escape(w)}</li>"
                                            for m, w in skipped.items()) + "</ul>") if skipped else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>empathkit evaluation</title><style>{_STYLE}"
            f"</style></head><body><h1>Evaluation report</h1>{html_table(header, rows)}<h2>Metrics</h2><ul>{notes}"
            f"</ul>{skip}</body></html>\n")


def write_report(result: EvalResult, out_dir: str | Path, config: dict | None = None, seed: int = 0,
                 by_emotion: Sequence[str] = (), plots: bool = False) -> Path:
    """Write every output file (see the module docstring) into ``out_dir``; returns it."""
    from empathkit.runs import save_run_meta, write_jsonl

    out = Path(out_dir)
    save_run_meta(out, config or {"metrics": [m for m, _ in result.metrics]}, seed)
    (out / "per_example").mkdir(parents=True, exist_ok=True)
    names_used: dict[str, int] = {}
    for r in result.runs:
        k = names_used[r.name] = names_used.get(r.name, 0) + 1
        fname = _safe(r.name) + (f".run{k}" if len(result.by_system()[r.name]) > 1 else "")
        write_jsonl(_per_example_rows(r), out / "per_example" / f"{fname}.jsonl")
    agg = {
        "metrics": [{"name": m, "options": o} for m, o in result.metrics],
        "summary": result.summary(),
        "runs": [{"system": r.name, "source": r.source, "n": r.n, "aggregates": r.aggregates, "info": r.info,
                  "seconds_per_metric": r.timings, "cpu_seconds_per_metric": r.cpu_timings,
                  "seconds_per_family": r.family_timings, "skipped": r.skipped,
                  **({"reported_by_file": r.reported} if r.reported else {})}
                 for r in result.runs],
    }
    (out / "aggregates.json").write_text(json.dumps(_finite(agg), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    header, rows = table_rows(result)
    skipped = {m: why for r in result.runs for m, why in r.skipped.items()}
    md = ["# Evaluation report", "", markdown_table(header, rows), "", "## Metrics", *metric_notes(result)]
    if skipped:
        md += ["", "## Skipped", *[f"- `{m}`: {why}" for m, why in skipped.items()]]
    md += reported_section(result)
    md += ["", "## Seconds per metric family", ""]
    fams = sorted({f for r in result.runs for f in r.family_timings})
    md.append(markdown_table(["system"] + fams, [[r.name] + [f"{r.family_timings.get(f, 0):.1f}" for f in fams]
                                                 for r in result.runs]))
    text = "\n".join(md) + "\n"
    extra = extra_sections(result, out, by_emotion, plots)
    if extra:
        text += "\n" + extra
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "report.html").write_text(_html_page(result, header, rows, skipped), encoding="utf-8")
    return out


def reported_section(result: EvalResult) -> list[str]:
    """Markdown lines of the numbers the input files print themselves (model-side PPL, accuracy, their own
    BLEU), kept apart from ours: they were computed by the system's code, not here."""
    runs = [r for r in result.runs if r.reported]
    if not runs:
        return []
    keys = sorted({k for r in runs for k in r.reported})
    rows = [[r.name] + [f"{r.reported[k]:g}" if k in r.reported else "" for k in keys] for r in runs]
    return ["", "## Reported by the file (not computed by empathkit)", "", markdown_table(["system"] + keys, rows)]


def extra_sections(result: EvalResult, out: Path, by_emotion: Sequence[str] = (), plots: bool = False) -> str:
    """Markdown of the optional sections: per-emotion breakdowns of per-example keys, bar / radar charts in
    ``<out>/plots/`` (at most 8 keys; the radar needs ≥ 3 keys and ≥ 2 systems)."""
    from empathkit.reports.tables import breakdown_table, rows_from_result

    md: list[str] = []
    if by_emotion:
        rows = rows_from_result(result)
        for key in by_emotion:
            md += ["## Per emotion", "", breakdown_table(rows, key), ""]
    if plots:
        from empathkit.reports import plots as P

        keys = [k for k in result.keys() if not k.startswith("tries-")][:8]
        if keys:
            p = P.bar_chart(result, keys, out / "plots" / "bars.png")
            md += [f"![bars]({p.relative_to(out)})", ""]
            if len(keys) >= 3 and len(result.systems()) >= 2:
                lower = [k for k in result.lower_is_better() if k in keys]
                p = P.radar_chart(result, keys, out / "plots" / "radar.png", lower_is_better=lower)
                md += [f"![radar]({p.relative_to(out)})", ""]
    return "\n".join(md)


def update_run_scores(result: EvalResult) -> Path | None:
    """When the only run was read from a run directory's ``predictions.jsonl``, merge its aggregates into that
    directory's ``scores.json`` (runs.py layout; non-finite values → null). Returns the file written, if any."""
    if len(result.runs) != 1 or not result.runs[0].source:
        return None
    src = Path(result.runs[0].source)
    if src.name != "predictions.jsonl" or not (src.parent / "config.yaml").is_file():
        return None
    path = src.parent / "scores.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    old.update({k: (v if isinstance(v, float) and math.isfinite(v) else None)
                for k, v in result.runs[0].aggregates.items()})
    path.write_text(json.dumps(old, indent=2), encoding="utf-8")
    return path


def _finite(obj: Any) -> Any:
    """NaN / inf → None so the JSON files stay standard JSON (NaN = not scored, e.g. a subsampled metric)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "system"
