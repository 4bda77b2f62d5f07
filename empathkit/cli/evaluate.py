"""``empathkit evaluate``: score one or several systems' outputs; optional significance tests against the first.

Examples::

    empathkit evaluate runs/…/predictions.jsonl                       # preset "basic"
    empathkit evaluate lora=runs/a/predictions.jsonl gated=runs/b/predictions.jsonl -p ecg-lora --significance
    empathkit evaluate moel.txt --refs refs.txt --contexts ctx.txt -m bleu-moses,dist
    empathkit evaluate out.tsv --hyp-col generated --ref-col gold -o eval/
    empathkit evaluate s=seed0.jsonl s=seed1.jsonl s=seed2.jsonl      # same name = seeds → mean ± SD
    empathkit evaluate --list                                         # registered metrics and presets
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors


def _parse_kv(items: List[str] | None, what: str) -> dict:
    from empathkit.config import apply_overrides

    return apply_overrides({}, items or []) if items else {}


def _split_input(arg: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH``; a run directory stands for its ``predictions.jsonl``."""
    if "=" in arg and not Path(arg).exists():
        name, path = arg.split("=", 1)
    else:
        name, path = "", arg
    p = Path(path)
    if p.is_dir() and (p / "predictions.jsonl").is_file():
        p = p / "predictions.jsonl"
    if not name:
        name = p.parent.name if p.name == "predictions.jsonl" and p.parent.name else p.stem
    return name, str(p)


def _list_metrics() -> None:
    from empathkit.evaluation import PRESETS
    from empathkit.metrics import METRICS

    for name, spec in METRICS.items():
        typer.echo(f"{name:18s} [{spec.family}] {spec.description}")
    typer.echo("\npresets: " + ", ".join(sorted(PRESETS) + ["all"]))
    for p, ms in PRESETS.items():
        typer.echo(f"  {p:12s} {', '.join(m for m, _ in ms)}")


@friendly_errors
def evaluate(inputs: List[str] = typer.Argument(None, help="prediction files: PATH or NAME=PATH (JSONL, CSV/TSV, or text with --refs); a repeated NAME = seeds"),
             preset: Optional[str] = typer.Option(None, "--preset", "-p", help="basic | ecg-lora | empo | nlpcc2025 | reflectdiffu | all (default basic)"),
             metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="comma-separated metric names (added to the preset)"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default <run>/eval or runs/<time>-evaluate)"),
             config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML with preset/metrics/metric_options/resources/columns"),
             opt: List[str] = typer.Option(None, "--opt", help="metric option, e.g. --opt meteor.synonyms=never"),
             resource: List[str] = typer.Option(None, "--resource", "-r", help="resource setting, e.g. -r encoder=minilm-l6 -r lm=…"),
             fmt: str = typer.Option("auto", "--format", help="auto | jsonl | csv | tsv | text"),
             hyp_col: Optional[str] = typer.Option(None, help="hypothesis field/column"),
             ref_col: Optional[str] = typer.Option(None, help="reference field/column"),
             ctx_col: Optional[str] = typer.Option(None, help="context field/column"),
             emo_col: Optional[str] = typer.Option(None, help="emotion field/column"),
             id_col: Optional[str] = typer.Option(None, help="id field/column"),
             context_sep: Optional[str] = typer.Option(None, help="separator of turns in a context cell/line (default ' ||| ', TAB for text files)"),
             refs: Optional[Path] = typer.Option(None, help="references file for plain-text hypotheses (one per line)"),
             contexts: Optional[Path] = typer.Option(None, help="contexts file for plain-text hypotheses (one per line)"),
             emotions: Optional[Path] = typer.Option(None, help="emotion labels file for plain-text hypotheses"),
             significance: bool = typer.Option(False, "--significance", "--compare", help="paired tests of every system against the first one on per-example metrics"),
             test: str = typer.Option("both", help="bootstrap | permutation | both"),
             resamples: int = typer.Option(1000, help="bootstrap / permutation resamples"),
             seed: int = typer.Option(0, help="seed of the resampling tests"),
             corpus_bootstrap: int = typer.Option(0, help="with --significance: also bootstrap corpus-level keys (corpus BLEU, Dist-n) with this many resamples (slow)"),
             strict: bool = typer.Option(False, help="fail instead of skipping a metric whose resource is missing"),
             by_emotion: List[str] = typer.Option(None, "--by-emotion", help="per-emotion breakdown of a per-example key (repeatable), appended to report.md"),
             plots: bool = typer.Option(False, "--plots", help="bar chart (+ radar chart with ≥ 3 keys) of the systems in <out>/plots/"),
             list_metrics: bool = typer.Option(False, "--list", help="list metrics and presets and exit")):
    """Score system outputs; writes per-example JSONL, aggregates.json, report.md and report.html."""
    from empathkit.config import load_config
    from empathkit.errors import ConfigError
    from empathkit.evaluation import Columns, evaluate as run_eval, markdown_table, read_predictions, table_rows, write_report

    if list_metrics:
        _list_metrics()
        return
    if not inputs:
        raise ConfigError("give at least one predictions file (or --list)")
    cfg = load_config(config) if config else {}
    preset = preset or cfg.get("preset")
    metric_list = metrics or cfg.get("metrics")
    metric_options = {**cfg.get("metric_options", {})}
    for k, v in _parse_kv(opt, "option").items():
        metric_options.setdefault(k, {}).update(v if isinstance(v, dict) else {})
    resources = {**cfg.get("resources", {}), **_parse_kv(resource, "resource")}
    ccfg = cfg.get("columns", {})
    cols = Columns(hypothesis=hyp_col or ccfg.get("hypothesis"), reference=ref_col or ccfg.get("reference"),
                   context=ctx_col or ccfg.get("context"), emotion=emo_col or ccfg.get("emotion"),
                   id=id_col or ccfg.get("id"))
    systems = []
    for arg in inputs:
        name, path = _split_input(arg)
        recs = read_predictions(path, fmt, cols, refs, contexts, emotions, context_sep)
        systems.append((name, recs, path))
    result = run_eval([(n, r) for n, r, _ in systems], metric_list, preset, resources, metric_options, strict)
    for run, (_, _, path) in zip(result.runs, systems):
        run.source = str(path)
    if out is None:
        first = Path(systems[0][2])
        if len(systems) == 1 and (first.parent / "config.yaml").is_file():
            out = first.parent / "eval"
        else:
            from empathkit.runs import new_run_dir

            out = new_run_dir("runs", "evaluate")
    run_config = {"inputs": [str(p) for _, _, p in systems], "preset": preset, "metrics": metric_list,
                  "metric_options": metric_options, "resources": resources, "format": fmt,
                  "resolved_metrics": [{"name": m, "options": o} for m, o in result.metrics]}
    write_report(result, out, run_config, seed)
    first = Path(systems[0][2])
    if len(systems) == 1 and first.name == "predictions.jsonl" and (first.parent / "config.yaml").is_file():
        _update_scores(first.parent / "scores.json", result.runs[0].aggregates)
    extra_md = _extras(result, out, by_emotion or [], plots)
    if extra_md:
        with (out / "report.md").open("a", encoding="utf-8") as f:
            f.write("\n" + extra_md)
    header, rows = table_rows(result)
    typer.echo(markdown_table(header, rows))
    if significance:
        if len(result.runs) < 2:
            raise ConfigError("--significance needs at least two systems")
        tests = significance_tests(result, test, resamples, seed, corpus_bootstrap)
        (out / "significance.json").write_text(json.dumps(tests, indent=2), encoding="utf-8")
        lines = [f"| system | vs | metric | test | Δ | p |", "|---|---|---|---|---|---|"]
        for t in tests:
            lines.append(f"| {t['system']} | {t['baseline']} | {t['metric']} | {t['test']} | {t['delta']:+.4f} | "
                         f"{t['p_value']:.4g}{' *' if t['p_value'] < 0.05 else ''} |")
        with (out / "report.md").open("a", encoding="utf-8") as f:
            f.write("\n## Significance (vs " + result.runs[0].name + ", * = p < 0.05)\n\n" + "\n".join(lines) + "\n")
        typer.echo("\n" + "\n".join(lines))
    console.print(f"report: {out / 'report.md'}")


def _update_scores(path: Path, aggregates: dict) -> None:
    """A run directory's ``scores.json`` (runs.py layout): merged with what is already there."""
    import math

    old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    old.update({k: (v if isinstance(v, float) and math.isfinite(v) else None) for k, v in aggregates.items()})
    path.write_text(json.dumps(old, indent=2), encoding="utf-8")


def _extras(result, out: Path, by_emotion: list[str], plots: bool) -> str:
    from empathkit.reports import plots as P
    from empathkit.reports.tables import breakdown_table, rows_from_result

    md = []
    if by_emotion:
        rows = rows_from_result(result)
        for key in by_emotion:
            md += ["## Per emotion", "", breakdown_table(rows, key), ""]
    if plots:
        keys = [k for k in result.keys() if not k.startswith("tries-")][:8]
        if keys:
            p = P.bar_chart(result, keys, out / "plots" / "bars.png")
            md += [f"![bars]({p.relative_to(out)})", ""]
            if len(keys) >= 3 and len(result.systems()) >= 2:
                lower = [k for k in result.lower_is_better() if k in keys]
                p = P.radar_chart(result, keys, out / "plots" / "radar.png", lower_is_better=lower)
                md += [f"![radar]({p.relative_to(out)})", ""]
    return "\n".join(md)


def significance_tests(result, test: str = "both", resamples: int = 1000, seed: int = 0,
                       corpus_resamples: int = 0) -> list[dict]:
    """Every system's first run against the first system's first run, paired by example id."""
    from empathkit.errors import DataError
    from empathkit.metrics.stats import compare_systems

    base = result.runs[0]
    seen = {base.name}
    out = []
    for run in result.runs[1:]:
        if run.name in seen:
            continue
        seen.add(run.name)
        pos = {rec.id: i for i, rec in enumerate(run.records)}
        missing = [rec.id for rec in base.records if rec.id not in pos]
        if missing:
            raise DataError(f"system {run.name!r} lacks example id {missing[0]!r} of {base.name!r}: cannot pair "
                            f"({len(missing)} missing)", file=run.source or None)
        order = [pos[rec.id] for rec in base.records]
        per_b = {k: [v[i] for i in order] for k, v in run.per_example.items()}
        for t in compare_systems(base.per_example, per_b, test=test, n_resamples=resamples, seed=seed):
            d = t.to_json()
            # report as system − baseline
            d.update(system=run.name, baseline=base.name, mean_a=t.mean_b, mean_b=t.mean_a, delta=-t.delta,
                     ci_low=None if t.ci_high is None else -t.ci_high, ci_high=None if t.ci_low is None else -t.ci_low)
            out.append(d)
        if corpus_resamples:
            from empathkit.metrics.stats import corpus_bootstrap

            recs_b = [run.records[i] for i in order]
            for key, metric in base.key_metric.items():
                if key in base.per_example or key not in run.aggregates:
                    continue
                opts = dict(next((o for m, o in result.metrics if m == metric), {}))
                t = corpus_bootstrap(metric, key, base.records, recs_b, corpus_resamples, seed, **opts)
                d = t.to_json()
                d.update(test="corpus-bootstrap", system=run.name, baseline=base.name, mean_a=t.mean_b,
                         mean_b=t.mean_a, delta=-t.delta, ci_low=-t.ci_high, ci_high=-t.ci_low)
                out.append(d)
    return out
