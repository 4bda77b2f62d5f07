"""The evaluation API behind ``empathkit evaluate``: read system outputs, run metrics / presets, write reports.

Inputs (:func:`read_predictions`):

- **JSONL** (our ``predictions.jsonl``): fields ``prediction``, ``reference``, ``context`` (list of turns or a
  string), ``emotion``, ``id``; other names via :class:`Columns`.
- **CSV / TSV** with a header row; column names via :class:`Columns` (defaults accept common aliases such as
  ``hypothesis`` / ``response``); a context cell holds the turns joined by ``context_sep`` (default ``" ||| "``).
- **Parallel text files**: one hypothesis per line (``.txt``) + ``references=`` file (one per line) + optional
  ``contexts=`` file (one line per example, turns separated by ``context_sep``, default TAB) + optional
  ``emotions=`` file.

Every reader error names the file, the line and the field.

Outputs (:func:`write_report`): ``per_example/<system>.jsonl``, ``aggregates.json``, ``report.md``,
``report.html``, ``config.yaml`` + ``versions.json`` (via :func:`empathkit.runs.save_run_meta`). Several systems
go side by side; the same system name given several times = several seeds → mean ± SD.
"""

from __future__ import annotations

import csv
import html
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from empathkit.errors import ConfigError, DataError, ResourceMissing

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ presets
# name → list of (metric, options). Classifier metrics (written separately) are included when registered.
PRESETS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    # what `empathkit evaluate` runs by default (the foundation issue): BLEU-1..4, ROUGE-L, Dist-1/2
    "basic": [("bleu", {}), ("rouge", {"types": ["rougeL"]}), ("dist", {"ns": [1, 2]})],
    # ECG-LoRA Table 1 + appendix: sentence BLEU (method4), ROUGE-1/2/L, BERTScore, per-sentence Dist-1/2, EA-F1, EC, Emp-F1
    "ecg-lora": [("bleu-sent", {"orders": [4]}), ("rouge", {}), ("bertscore", {}), ("dist-sent", {"ns": [1, 2]}),
                 ("ea-f1", {}), ("ec", {}), ("emp-f1", {})],
    # EmPO Tables 2, 4, 5: DIFF-EPITOME, BERTScore, response tries, NIDF, intensity/valence/arousal word choice
    "empo": [("diff-epitome", {}), ("bertscore", {}), ("response-tries", {}), ("nidf", {}), ("word-choice", {})],
    # NLPCC 2025 Task 8: METEOR, BLEU-4, ROUGE-L, Vector Extrema, Dist-2/3, G-Score and the composite
    "nlpcc2025": [("meteor", {}), ("bleu", {"orders": [4]}), ("rouge", {"types": ["rougeL"]}),
                  ("vector-extrema", {}), ("dist", {"ns": [2, 3]}), ("g-score", {}), ("nlpcc2025", {})],
    # ReflectDiffu Table 2: BLEU-1..4, BARTScore, Acc_emo, Acc_intent, PPL, Dist-1/2
    "reflectdiffu": [("bleu-moses", {}), ("bartscore", {}), ("acc-emo", {}), ("acc-intent", {}),
                     ("perplexity", {}), ("dist", {"ns": [1, 2]})],
}
# metrics "all" leaves out unless named: a local LLM judge is slow and noisy, the composite needs it
_ALL_EXCLUDES = ("g-score", "nlpcc2025")


def preset_metrics(preset: str) -> list[tuple[str, dict[str, Any]]]:
    from empathkit.metrics import METRICS

    if preset == "all":
        return [(n, {}) for n in METRICS.names() if n not in _ALL_EXCLUDES]
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS) + ['all'])}")
    return [(n, dict(o)) for n, o in PRESETS[preset] if n in METRICS or _must_exist(n)]


def _must_exist(name: str) -> bool:
    """Preset members that are not registered: classifier metrics when the classifier modules are absent → skipped."""
    log.warning("metric %r of the preset is not registered (classifier metrics module missing?) — skipped", name)
    return False


# ------------------------------------------------------------------------------------------------ reading inputs
@dataclass
class Record:
    id: str
    hypothesis: str
    reference: str
    context: list[str] = field(default_factory=list)
    emotion: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Columns:
    """Field / column names. ``None`` = try the aliases in order."""

    hypothesis: str | None = None
    reference: str | None = None
    context: str | None = None
    emotion: str | None = None
    id: str | None = None


_ALIASES = {
    "hypothesis": ("prediction", "hypothesis", "hyp", "response", "generation", "generated", "output", "pred"),
    "reference": ("reference", "ref", "target", "gold", "ground_truth", "label_text"),
    "context": ("context", "history", "dialogue_context", "prompt", "source"),
    "emotion": ("emotion", "emotion_label", "label", "emo"),
    "id": ("id", "example_id", "idx"),
}


def _pick(available: Iterable[str], role: str, explicit: str | None, file: str, line: int, required: bool) -> str | None:
    avail = list(available)
    if explicit:
        if explicit not in avail:
            raise DataError(f"missing {role} field/column {explicit!r} (have: {', '.join(avail)})", file=file,
                            line=line, field=explicit)
        return explicit
    for a in _ALIASES[role]:
        if a in avail:
            return a
    if required:
        raise DataError(f"no {role} field/column (tried {', '.join(_ALIASES[role])}; have: {', '.join(avail)}); "
                        f"name it with --{role[:3]}-col", file=file, line=line, field=role)
    return None


def _as_context(value: Any, sep: str, file: str, line: int, field_name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(t, str) for t in value):
            raise DataError("context list must hold strings", file=file, line=line, field=field_name)
        return list(value)
    if isinstance(value, str):
        return [t.strip() for t in value.split(sep) if t.strip()]
    raise DataError(f"context must be a list of strings or a string, got {type(value).__name__}", file=file,
                    line=line, field=field_name)


def _as_text(value: Any, file: str, line: int, field_name: str) -> str:
    if value is None:
        raise DataError("value is missing (null)", file=file, line=line, field=field_name)
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line, field=field_name)
    return value


def _read_jsonl(p: Path, cols: Columns, sep: str) -> list[Record]:
    out: list[Record] = []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg})", file=str(p), line=lineno) from None
            if not isinstance(row, dict):
                raise DataError("each line must be a JSON object", file=str(p), line=lineno)
            out.append(_row_to_record(row, cols, sep, str(p), lineno, len(out)))
    if not out:
        raise DataError("no predictions in file", file=str(p))
    return out


def _row_to_record(row: Mapping[str, Any], cols: Columns, sep: str, file: str, lineno: int, k: int) -> Record:
    keys = list(row.keys())
    h = _pick(keys, "hypothesis", cols.hypothesis, file, lineno, True)
    r = _pick(keys, "reference", cols.reference, file, lineno, True)
    c = _pick(keys, "context", cols.context, file, lineno, False)
    e = _pick(keys, "emotion", cols.emotion, file, lineno, False)
    i = _pick(keys, "id", cols.id, file, lineno, False)
    extra = {k2: v for k2, v in row.items() if k2 not in {h, r, c, e, i}}
    if isinstance(extra.get("extra"), dict):  # our Prediction.extra (e.g. predicted emotion, log-likelihoods)
        extra = {**extra, **extra.pop("extra")}
    emo = row.get(e) if e else None
    return Record(id=str(row[i]) if i and row.get(i) not in (None, "") else str(k),
                  hypothesis=_as_text(row[h], file, lineno, h), reference=_as_text(row[r], file, lineno, r),
                  context=_as_context(row.get(c), sep, file, lineno, c) if c else [],
                  emotion=str(emo).strip() if emo not in (None, "") else None, extra=extra)


def _read_csv(p: Path, cols: Columns, sep: str, delimiter: str) -> list[Record]:
    out: list[Record] = []
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if not reader.fieldnames:
            raise DataError("file is empty (no header row)", file=str(p), line=1)
        for row in reader:
            lineno = reader.line_num
            if None in row:
                raise DataError(f"more fields than the {len(reader.fieldnames)} header columns", file=str(p), line=lineno)
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise DataError(f"fewer fields than the header ({len(reader.fieldnames)} columns)", file=str(p),
                                line=lineno, field=missing[0])
            out.append(_row_to_record(row, cols, sep, str(p), lineno, len(out)))
    if not out:
        raise DataError("header but no rows", file=str(p), line=2)
    return out


def _read_lines(p: Path) -> list[str]:
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[:e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte {e.start})", file=str(p), line=line) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _read_parallel(p: Path, references: str | Path, contexts: str | Path | None, emotions: str | Path | None,
                   sep: str) -> list[Record]:
    hyps, refs = _read_lines(p), _read_lines(Path(references))
    if not hyps:
        raise DataError("no hypotheses (empty file)", file=str(p))
    if len(refs) != len(hyps):
        short, long_ = (references, p) if len(refs) < len(hyps) else (p, references)
        raise DataError(f"{len(hyps)} hypotheses but {len(refs)} references: {short} ends at line "
                        f"{min(len(refs), len(hyps))}", file=str(long_), line=min(len(refs), len(hyps)) + 1)
    ctxs = _read_lines(Path(contexts)) if contexts else None
    emos = _read_lines(Path(emotions)) if emotions else None
    for name, xs in (("contexts", ctxs), ("emotions", emos)):
        if xs is not None and len(xs) != len(hyps):
            src = contexts if name == "contexts" else emotions
            raise DataError(f"{len(xs)} lines but {len(hyps)} hypotheses", file=str(src), line=min(len(xs), len(hyps)) + 1)
    return [Record(id=str(i), hypothesis=h, reference=r,
                   context=[t.strip() for t in ctxs[i].split(sep) if t.strip()] if ctxs else [],
                   emotion=(emos[i].strip() or None) if emos else None)
            for i, (h, r) in enumerate(zip(hyps, refs))]


def read_predictions(path: str | Path, fmt: str = "auto", columns: Columns | None = None,
                     references: str | Path | None = None, contexts: str | Path | None = None,
                     emotions: str | Path | None = None, context_sep: str | None = None) -> list[Record]:
    """Read one system's outputs. ``fmt``: auto (by suffix) | jsonl | csv | tsv | text."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    cols = columns or Columns()
    if fmt == "auto":
        suf = p.suffix.lower()
        fmt = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}.get(suf, "text")
    if fmt == "jsonl":
        return _read_jsonl(p, cols, context_sep or " ||| ")
    if fmt in ("csv", "tsv"):
        return _read_csv(p, cols, context_sep or " ||| ", "," if fmt == "csv" else "\t")
    if fmt == "text":
        if references is None:
            raise ConfigError(f"{p}: plain-text hypotheses need a references file (--refs)")
        return _read_parallel(p, references, contexts, emotions, context_sep or "\t")
    raise ConfigError(f"unknown input format {fmt!r} (auto | jsonl | csv | tsv | text)")


def records_from_predictions(preds: Sequence[Any]) -> list[Record]:
    """:class:`empathkit.types.Prediction` objects (or their dicts) → records."""
    out = []
    for k, p in enumerate(preds):
        d = p.to_json() if hasattr(p, "to_json") else dict(p)
        out.append(_row_to_record(d, Columns(), " ||| ", "<predictions>", k + 1, k))
    return out


def to_batch(records: Sequence[Record]):
    from empathkit.metrics.base import Batch

    extra_keys = sorted({k for r in records for k in r.extra})
    extra = {k: [r.extra.get(k) for r in records] for k in extra_keys}
    return Batch(hypotheses=[r.hypothesis for r in records], references=[r.reference for r in records],
                 contexts=[r.context for r in records], emotions=[r.emotion for r in records],
                 ids=[r.id for r in records], extra=extra)


# ------------------------------------------------------------------------------------------------ running
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


def resolve_metrics(metrics: Sequence[str | tuple[str, dict]] | str | None = None, preset: str | None = None,
                    metric_options: Mapping[str, Mapping[str, Any]] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """A preset and/or explicit metric names (``"bleu,rouge"``) → [(metric, options)], options merged."""
    from empathkit.metrics import METRICS

    chosen: list[tuple[str, dict[str, Any]]] = []
    if preset:
        chosen.extend(preset_metrics(preset))
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    for m in metrics or []:
        if isinstance(m, (tuple, list)):  # already resolved: (name, options)
            METRICS.get(m[0])
            chosen.append((m[0], dict(m[1])))
            continue
        if m in PRESETS or m == "all":
            chosen.extend(preset_metrics(m))
            continue
        METRICS.get(m)  # raises ConfigError naming the known metrics
        if m not in [c[0] for c in chosen]:
            chosen.append((m, {}))
    if not chosen:
        chosen = preset_metrics("basic")
    out = []
    seen = set()
    for name, opts in chosen:
        if name in seen:
            continue
        seen.add(name)
        out.append((name, {**opts, **dict((metric_options or {}).get(name, {}))}))
    return out


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
        except TypeError as e:
            if "unexpected keyword" in str(e):
                raise ConfigError(f"metric {mname!r}: {e}") from None
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


# ------------------------------------------------------------------------------------------------ reports
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


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>{body}</tbody>\n</table>"


def _metric_notes(result: EvalResult) -> list[str]:
    from empathkit.metrics import METRICS

    notes = []
    for mname, _ in result.metrics:
        spec = METRICS.get(mname)
        info = next((r.info[mname] for r in result.runs if mname in r.info), {})
        extra = ", ".join(f"{k}={v}" for k, v in info.items() if k in ("variant", "implementation", "scale", "tokenize",
                                                                       "encoder", "model", "num_layers", "rescaled"))
        notes.append(f"- `{mname}` ({spec.family}): {spec.description}" + (f" — {extra}" if extra else ""))
    return notes


def write_report(result: EvalResult, out_dir: str | Path, config: dict | None = None, seed: int = 0) -> Path:
    from empathkit.runs import save_run_meta

    out = Path(out_dir)
    save_run_meta(out, config or {"metrics": [m for m, _ in result.metrics]}, seed)
    (out / "per_example").mkdir(parents=True, exist_ok=True)
    names_used: dict[str, int] = {}
    for r in result.runs:
        k = names_used[r.name] = names_used.get(r.name, 0) + 1
        fname = _safe(r.name) + (f".run{k}" if len(result.by_system()[r.name]) > 1 else "")
        with (out / "per_example" / f"{fname}.jsonl").open("w", encoding="utf-8") as f:
            for i, rec in enumerate(r.records):
                row = {"id": rec.id, "emotion": rec.emotion, "hypothesis": rec.hypothesis, "reference": rec.reference}
                row.update({key: vals[i] for key, vals in r.per_example.items() if i < len(vals)})
                f.write(json.dumps(_finite(row), ensure_ascii=False) + "\n")
    agg = {
        "metrics": [{"name": m, "options": o} for m, o in result.metrics],
        "summary": result.summary(),
        "runs": [{"system": r.name, "source": r.source, "n": r.n, "aggregates": r.aggregates, "info": r.info,
                  "seconds_per_metric": r.timings, "cpu_seconds_per_metric": r.cpu_timings,
                  "seconds_per_family": r.family_timings, "skipped": r.skipped}
                 for r in result.runs],
    }
    (out / "aggregates.json").write_text(json.dumps(_finite(agg), indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    header, rows = table_rows(result)
    skipped = {m: why for r in result.runs for m, why in r.skipped.items()}
    md = ["# Evaluation report", "", markdown_table(header, rows), "", "## Metrics", *_metric_notes(result)]
    if skipped:
        md += ["", "## Skipped", *[f"- `{m}`: {why}" for m, why in skipped.items()]]
    md += ["", "## Seconds per metric family", ""]
    fams = sorted({f for r in result.runs for f in r.family_timings})
    md.append(markdown_table(["system"] + fams, [[r.name] + [f"{r.family_timings.get(f, 0):.1f}" for f in fams]
                                                 for r in result.runs]))
    (out / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>empathkit evaluation</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>"
            "<h1>Evaluation report</h1>" + html_table(header, rows) + "<h2>Metrics</h2><ul>"
            + "".join(f"<li>{html.escape(n[2:])}</li>" for n in _metric_notes(result)) + "</ul>"
            + ("<h2>Skipped</h2><ul>" + "".join(f"<li><code>{html.escape(m)}</code>: {html.escape(w)}</li>"
                                               for m, w in skipped.items()) + "</ul>" if skipped else "")
            + "</body></html>\n")
    (out / "report.html").write_text(page, encoding="utf-8")
    return out


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
