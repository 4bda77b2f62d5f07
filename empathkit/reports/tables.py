"""Tables: the one Markdown / HTML table writer, and per-emotion breakdowns of any per-example metric.

:func:`markdown_table` / :func:`html_table` write every table of the package (evaluation reports, significance,
human evaluation, run reports, benchmarks); cells are given as strings (other values go through ``str``).

The breakdown groups examples by their gold ED emotion (the ``emotion`` field of the predictions) and reports the
mean of a per-example metric and the number of examples per emotion; systems go side by side. Corpus-level metrics
(corpus BLEU, corpus Dist-n) have no per-example values: ask for their per-sentence variants (``bleu-sent``,
``dist-sent``) or re-run the corpus metric per emotion with :func:`per_emotion_corpus`.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from empathkit.errors import ConfigError


def markdown_table(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str | Sequence[str] | None = None) -> str:
    """A GitHub Markdown table. ``align``: one letter per column, ``l`` (default) or ``r`` (e.g. ``"lrr"``)."""
    if align is not None and len(align) != len(header):
        raise ValueError(f"align has {len(align)} letters for {len(header)} columns")
    seps = ["---:" if a == "r" else "---" for a in (align or ["l"] * len(header))]
    lines = ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "|".join(seps) + "|"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_cell(value: Any) -> str:
    """A cell's text: ``|`` escaped and line breaks turned into spaces, so a cell can never split its row."""
    return str(value).replace("\\|", "|").replace("|", "\\|").replace("\r\n", " ").replace("\n", " ")


def html_table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """The same table as HTML (cells escaped)."""
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def load_per_example(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``per_example/<system>.jsonl`` file written by ``empathkit evaluate``."""
    from empathkit.runs import read_jsonl

    return read_jsonl(path)


def load_eval_dir(out_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """system file stem → per-example rows, for every file in ``<out_dir>/per_example/``."""
    d = Path(out_dir) / "per_example"
    if not d.is_dir():
        raise ConfigError(f"{out_dir} has no per_example/ folder (not an `empathkit evaluate` output?)")
    return {f.stem: load_per_example(f) for f in sorted(d.glob("*.jsonl"))}


def rows_from_result(result) -> dict[str, list[dict[str, Any]]]:
    """EvalResult → system → per-example rows (first run of each system)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for run in result.runs:
        if run.name in out:
            continue
        rows = []
        for i, rec in enumerate(run.records):
            row = {"id": rec.id, "emotion": rec.emotion}
            row.update({k: v[i] for k, v in run.per_example.items()})
            rows.append(row)
        out[run.name] = rows
    return out


def per_emotion(rows: Sequence[Mapping[str, Any]], key: str) -> dict[str, tuple[float, int]]:
    """emotion → (mean of ``key`` over its examples, number of scored examples); NaN / None values are left out."""
    groups: dict[str, list[float]] = {}
    found = False
    for r in rows:
        if key in r:
            found = True
        v = r.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        groups.setdefault(r.get("emotion") or "(none)", []).append(float(v))
    if not found:
        have = sorted({k for r in rows for k in r if k not in ("id", "emotion", "hypothesis", "reference")})
        raise ConfigError(f"no per-example values for {key!r} (corpus-level metric or not computed); have: "
                          f"{', '.join(have) or '(none)'}")
    return {e: (sum(v) / len(v), len(v)) for e, v in sorted(groups.items())}


def per_emotion_corpus(records: Sequence[Any], metric: str, key: str, resources=None, **options) -> dict[str, tuple[float, int]]:
    """Re-run a (corpus) metric on each emotion's examples: emotion → (value of ``key``, n)."""
    from empathkit.evaluation.runner import to_batch
    from empathkit.metrics import METRICS

    spec = METRICS.get(metric)
    by: dict[str, list] = {}
    for r in records:
        by.setdefault(r.emotion or "(none)", []).append(r)
    return {e: (float(spec.fn(to_batch(rs), resources, **options).aggregate[key]), len(rs)) for e, rs in sorted(by.items())}


def breakdown_table(systems: Mapping[str, Sequence[Mapping[str, Any]]], key: str, fmt: str = "md",
                    digits: int = 4) -> str:
    """Per-emotion table: one row per emotion, one column per system (mean, n in the first), plus an 'all' row."""
    cols = {name: per_emotion(rows, key) for name, rows in systems.items()}
    emotions = sorted({e for c in cols.values() for e in c})
    header = ["emotion", "n"] + list(cols)
    body = []
    for e in emotions:
        n = next((c[e][1] for c in cols.values() if e in c), 0)
        body.append([e, str(n)] + [f"{c[e][0]:.{digits}f}" if e in c else "–" for c in cols.values()])
    overall = []
    for name, rows in systems.items():
        vals = [float(r[key]) for r in rows if r.get(key) is not None and not (isinstance(r[key], float) and math.isnan(r[key]))]
        overall.append(f"{sum(vals) / len(vals):.{digits}f}" if vals else "–")
    first_rows = next(iter(systems.values()), [])
    body.append(["all", str(sum(1 for r in first_rows if r.get(key) is not None))] + overall)
    if fmt == "md":
        return f"**{key} by emotion**\n\n" + markdown_table(header, body)
    if fmt == "html":
        return html_table(header, body)
    if fmt == "json":
        return json.dumps({name: {e: {"mean": m, "n": n} for e, (m, n) in c.items()} for name, c in cols.items()}, indent=2)
    raise ConfigError(f"unknown table format {fmt!r} (md | html | json)")


def best_and_worst(rows: Sequence[Mapping[str, Any]], key: str, k: int = 3,
                   higher_is_better: bool = True) -> tuple[list[str], list[str]]:
    """The ``k`` best and worst emotions of one system for ``key``."""
    pe = per_emotion(rows, key)
    order: Callable[[str], float] = lambda e: pe[e][0]  # noqa: E731
    ranked = sorted(pe, key=order, reverse=higher_is_better)
    return ranked[:k], ranked[-k:][::-1]
