"""``empathkit data …``: stats, download, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from empathkit.cli.common import console, friendly_errors

app = typer.Typer(help="Inspect, download and convert dialogue data.", no_args_is_help=True)


@app.command("stats")
@friendly_errors
def stats(source: str = typer.Option("ed", help="'ed', a release folder/.tar.gz, a .jsonl file or hf:<id>"),
          protocol: str = typer.Option("every-listener", help="every-listener | last-listener"),
          as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables")):
    """Per-split conversation / example counts and per-emotion counts."""
    from empathkit.data.stats import compute_stats

    st = compute_stats(source, protocol=protocol)
    if as_json:
        print(json.dumps(st, indent=2))
        return
    t = Table(title=f"{source} ({protocol})")
    for c in ("split", "conversations", "utterances", "examples", "emotions"):
        t.add_column(c)
    for split, s in st.items():
        t.add_row(split, f"{s['conversations']:,}", f"{s['utterances']:,}", f"{s['examples']:,}", str(len(s["emotions"])))
    console.print(t)
    e = Table(title="conversations per emotion")
    e.add_column("emotion")
    for split in st:
        e.add_column(split, justify="right")
    for emo in sorted(next(iter(st.values()))["emotions"]):
        e.add_row(emo, *[str(st[s]["emotions"].get(emo, 0)) for s in st])
    console.print(e)


@app.command("download")
@friendly_errors
def download(dest: Path = typer.Option(Path("data"), help="folder to put empatheticdialogues/ in"),
             url: Optional[str] = typer.Option(None, help="override the archive URL")):
    """Fetch the official EmpatheticDialogues archive (needs internet; fails fast offline)."""
    from empathkit.data.download import ED_URL, download_ed

    out = download_ed(dest, url or ED_URL)
    console.print(f"EmpatheticDialogues extracted to {out}; use data.source={out}")


@app.command("export")
@friendly_errors
def export(out: Path = typer.Argument(..., help="output .jsonl"), source: str = typer.Option("ed"),
           split: str = typer.Option("train")):
    """Convert any supported source to the documented JSONL dialogue format."""
    from empathkit.data import load_dialogues
    from empathkit.data.jsonl import write_jsonl

    d = load_dialogues(source, split)
    write_jsonl(d, out)
    console.print(f"wrote {len(d)} dialogues to {out}")
