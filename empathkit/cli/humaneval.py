"""``empathkit humaneval``: export blinded annotation sheets, aggregate the filled ones.

    empathkit humaneval export lora=runs/a/predictions.jsonl ecg=runs/b/predictions.jsonl -n 64 -k 3 -o he/
    empathkit humaneval aggregate he/filled/*.csv --key he/key.json
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors

app = typer.Typer(help="Human evaluation kit: blinded A/B or Likert sheets and their aggregation.", no_args_is_help=True)


@app.command("export")
@friendly_errors
def export(inputs: List[str] = typer.Argument(..., help="NAME=PATH prediction files (JSONL / CSV / TSV)"),
           out: Path = typer.Option(Path("humaneval"), "--out", "-o", help="output folder"),
           mode: str = typer.Option("ab", help="ab | likert"),
           n: int = typer.Option(64, "-n", help="examples to sample (stratified by emotion)"),
           annotators: int = typer.Option(3, "-k", "--annotators", help="number of annotator sheets"),
           aspects: str = typer.Option("empathy,relevance,fluency", help="comma-separated aspects"),
           seed: int = typer.Option(0, help="sampling / blinding seed")):
    """Write annotator_<k>.csv sheets, form.html and the hidden key.json."""
    from empathkit.cli.evaluate import _split_input
    from empathkit.evaluation import read_predictions
    from empathkit.humaneval import export_sheets

    systems = {}
    for arg in inputs:
        name, path = _split_input(arg)
        systems[name] = read_predictions(path)
    d = export_sheets(systems, out, mode, n, annotators, aspects.split(","), seed)
    console.print(f"sheets: {d}/annotator_*.csv, form: {d / 'form.html'}, key (keep hidden): {d / 'key.json'}")


@app.command("aggregate")
@friendly_errors
def aggregate_cmd(sheets: List[Path] = typer.Argument(..., help="filled annotator CSV files"),
                  key: Path = typer.Option(..., "--key", help="key.json written by export"),
                  out: Optional[Path] = typer.Option(None, "--out", "-o", help="results path stem (.json + .md)")):
    """Win/tie/lose (A/B) or mean ± SD (Likert) per aspect, with Fleiss' kappa."""
    from empathkit.humaneval import aggregate
    from empathkit.humaneval.aggregate import to_markdown

    res = aggregate(sheets, key, out or key.parent / "results")
    typer.echo(to_markdown(res))
