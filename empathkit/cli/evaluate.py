"""``empathkit evaluate``: score one or several systems' outputs; optional significance tests against the first.

Examples::

    empathkit evaluate runs/…/predictions.jsonl                       # preset "basic"
    empathkit evaluate lora=runs/a/predictions.jsonl gated=runs/b/predictions.jsonl -p ecg-lora --significance
    empathkit evaluate moel.txt --refs refs.txt --contexts ctx.txt -m bleu-moses,dist
    empathkit evaluate out.tsv --hyp-col generated --ref-col gold -o eval/
    empathkit evaluate s=seed0.jsonl s=seed1.jsonl s=seed2.jsonl      # same name = seeds → mean ± SD
    empathkit evaluate --list                                         # registered metrics and presets
    empathkit evaluate mime=output.txt -p moel-paper                  # a released file: every decode it holds
    empathkit evaluate EmpDG.txt --format empdg -p kemp-paper         # as-published preset (char-set strip on)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors


def _parse_kv(items: List[str] | None) -> dict:
    from empathkit.config import apply_overrides

    return apply_overrides({}, items or []) if items else {}


def _split_input(arg: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH``; a run directory stands for its ``predictions.jsonl``."""
    if "=" in arg and not Path(arg).exists():
        name, path = arg.split("=", 1)
    else:
        name, path = "", arg
    p = Path(path)
    if p.is_dir():
        if not (p / "predictions.jsonl").is_file():
            from empathkit.errors import DataError

            hint = (" (a run directory whose generation did not finish: rerun `empathkit generate`)"
                    if (p / "config.yaml").is_file() else "")
            raise DataError(f"no predictions.jsonl in this directory{hint}", file=str(p))
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
             preset: Optional[str] = typer.Option(None, "--preset", "-p", help="basic | ecg-lora | empo | nlpcc2025 | reflectdiffu | moel-paper | kemp-paper | cem-paper | empo-paper | lee2024 | all (default basic)"),
             metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="comma-separated metric names (added to the preset)"),
             out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder (default <run>/eval or runs/<time>-evaluate)"),
             config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML with preset/metrics/metric_options/resources/columns"),
             opt: List[str] = typer.Option(None, "--opt", help="metric option, e.g. --opt meteor.synonyms=never"),
             resource: List[str] = typer.Option(None, "--resource", "-r", help="resource setting, e.g. -r encoder=minilm-l6 -r lm=…"),
             fmt: str = typer.Option("auto", "--format", help="auto | jsonl | csv | tsv | text, or a released layout: moel | kemp | cem | mime | empdg | empo | empathy-eval | care"),
             strip: Optional[str] = typer.Option(None, "--strip", help="released files: how 'Pred:'-style prefixes are removed: prefix (default) | charset (the original scripts' str.strip quirk; default of kemp-paper / cem-paper)"),
             human: bool = typer.Option(False, "--human", help="EmPO files: also score the references (gen_targets) as a 'human' system"),
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
    from empathkit.evaluation import (Columns, evaluate as run_eval, read_predictions, significance_tests, table_rows,
                                      update_run_scores, write_report, write_significance)
    from empathkit.evaluation.presets import PRESET_READER
    from empathkit.evaluation.released import FORMATS as RELEASED, STRIPS, expand_input
    from empathkit.evaluation.significance import TESTS
    from empathkit.reports.tables import markdown_table

    if list_metrics:
        _list_metrics()
        return
    if not inputs:
        raise ConfigError("give at least one predictions file (or --list)")
    if significance and len(inputs) < 2:
        raise ConfigError("--significance needs at least two systems")
    if test not in TESTS:
        raise ConfigError(f"--test {test!r}: one of {' | '.join(TESTS)}")
    cfg = load_config(config) if config else {}
    preset = preset or cfg.get("preset")
    metric_list = metrics or cfg.get("metrics")
    if not isinstance(cfg.get("metric_options", {}), dict):
        raise ConfigError(f"{config}: metric_options must map metric → {{option: value}}")
    metric_options = {**cfg.get("metric_options", {})}
    for k, v in _parse_kv(opt).items():
        if not isinstance(v, dict):
            raise ConfigError(f"--opt {k}={v}: give METRIC.OPTION=VALUE (e.g. --opt meteor.synonyms=never)")
        metric_options.setdefault(k, {}).update(v)
    resources = {**cfg.get("resources", {}), **_parse_kv(resource)}
    ccfg = cfg.get("columns", {})
    cols = Columns(hypothesis=hyp_col or ccfg.get("hypothesis"), reference=ref_col or ccfg.get("reference"),
                   context=ctx_col or ccfg.get("context"), emotion=emo_col or ccfg.get("emotion"),
                   id=id_col or ccfg.get("id"))
    from empathkit.evaluation.readers import FORMATS as GENERIC

    if fmt not in GENERIC + RELEASED:
        raise ConfigError(f"unknown input format {fmt!r} ({' | '.join(GENERIC + RELEASED)})")
    strip = strip or PRESET_READER.get(preset or "", {}).get("strip", "prefix")
    if strip not in STRIPS:
        raise ConfigError(f"--strip {strip!r}: one of {' | '.join(STRIPS)}")
    systems, reported = [], []
    for arg in inputs:
        name, path = _split_input(arg)
        released = expand_input(name, path, fmt, strip, human, refs)
        if released is not None:
            systems += [(n, r, path) for n, r, _ in released]
            reported += [rep for _, _, rep in released]
            continue
        if fmt in RELEASED:
            raise ConfigError(f"--format {fmt}: {path} is not a file of that layout")
        systems.append((name, read_predictions(path, fmt, cols, refs, contexts, emotions, context_sep), path))
        reported.append({})
    result = run_eval([(n, r) for n, r, _ in systems], metric_list, preset, resources, metric_options, strict)
    for run, (_, _, path), rep in zip(result.runs, systems, reported):
        run.source = str(path)
        run.reported = dict(rep)
    out = out or _default_out(Path(systems[0][2]), len(systems))
    run_config = {"inputs": [str(p) for _, _, p in systems], "preset": preset, "metrics": metric_list,
                  "metric_options": metric_options, "resources": resources, "format": fmt, "strip": strip,
                  "resolved_metrics": [{"name": m, "options": o} for m, o in result.metrics]}
    write_report(result, out, run_config, seed, by_emotion=by_emotion or [], plots=plots)
    update_run_scores(result)
    header, rows = table_rows(result)
    typer.echo(markdown_table(header, rows))
    for run in result.runs:
        if run.reported:
            typer.echo(f"reported by the file ({run.name}): "
                       + ", ".join(f"{k}={v:g}" for k, v in sorted(run.reported.items())))
    if significance:
        tests = significance_tests(result, test, resamples, seed, corpus_bootstrap)
        typer.echo("\n" + write_significance(result, tests, out))
    console.print(f"report: {out / 'report.md'}")


def _default_out(first: Path, n_inputs: int) -> Path:
    """``<run>/eval`` for one run directory's predictions, else a new ``runs/<time>-evaluate``."""
    if n_inputs == 1 and (first.parent / "config.yaml").is_file():
        return first.parent / "eval"
    from empathkit.runs import new_run_dir

    return new_run_dir("runs", "evaluate")
