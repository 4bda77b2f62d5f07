"""``empathkit retrieve``: REG's exemplar retrieval from a saved index, or ``--build-index`` to build one from ED train.

The work is in :mod:`empathkit.methods.reg.index` (``retrieve``, ``build_from_overrides``); this module only parses
the arguments and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors, print_table


def _short(text: str, n: int = 160) -> str:
    text = " ".join(text.split()).replace("|", "/")  # a cell of the Markdown form when piped
    return text if len(text) <= n else text[:n - 1] + "…"


def exemplar_rows(exemplars) -> list[list[str]]:
    def lvl(v):
        return "" if v is None else str(v)

    rows = []
    for e in exemplars:
        a = e.attributes
        ctx = f"  (to: {_short(e.context[-1], 80)})" if e.context else ""
        agree = a.get("agreement")
        rows.append([_short(e.response) + ctx, f"{e.score:.3f}", f"{a.get('cosine', e.score):.3f}",
                     "" if agree is None else f"{agree:.2f}", lvl(a.get("sentiment")), lvl(a.get("presence")),
                     lvl(a.get("interpretation")), lvl(a.get("exploration")), lvl(a.get("emotion")), e.id])
    return rows


HEADER = ["exemplar (response, to: last context turn)", "score", "cos", "agree", "sent", "pres", "int", "exp",
          "emotion", "id"]


@friendly_errors
def retrieve(args: List[str] = typer.Argument(None, help="the context, one argument per turn (oldest first); "
                                                          "with --build-index: key=value overrides, e.g. "
                                                          "data.train_limit=2000 attributes.source=none"),
             index: Optional[Path] = typer.Option(None, "--index", help="a saved retrieval index folder"),
             run: Optional[Path] = typer.Option(None, "--run", help="a REG run directory: its index (refreshed by "
                                                                   "stage 2 if it re-indexed) and trained query encoder"),
             k: int = typer.Option(5, "-k", "--k", min=1, help="exemplars to show"),
             mode: str = typer.Option("reg", "--mode", help="reg (cosine + attribute agreement) | semantic (cosine)"),
             build: bool = typer.Option(False, "--build-index", help="build an index from the ED train split"),
             out: Optional[Path] = typer.Option(None, "--out", help="--build-index: the index folder to write"),
             config: Optional[str] = typer.Option(None, "--config", "-c", help="--build-index: a YAML config"),
             force: bool = typer.Option(False, "--force", help="--build-index: rebuild even if the saved config matches"),
             as_json: bool = typer.Option(False, "--json", help="print the exemplars as JSON lines")):
    """Print the top exemplars of a context (REG retrieval), or build the index they come from."""
    from rich.console import Console

    from empathkit.errors import ConfigError
    from empathkit.methods.reg.index import build_from_overrides, retrieve as do_retrieve

    if build:
        if out is None:
            raise ConfigError("--build-index needs --out <dir>")
        idx = build_from_overrides(args or [], out, config, force)
        c = idx.config
        console.print(f"index: {out} ({c['corpus_size']} exemplars, encoder {c['encoder']}, attributes "
                      f"{c['attribute_source']}; seconds {json.dumps(c.get('seconds', {}))})", highlight=False)
        return
    loaded = None
    if run is not None and index is None:  # what the run retrieves at inference: its trained query encoder
        from empathkit.methods.reg.method import run_index

        loaded = run_index(run) if run.is_dir() else None
    exemplars = do_retrieve(list(args or []), index=index, run=run, k=k, mode=mode, loaded=loaded)
    if as_json:
        for e in exemplars:
            typer.echo(json.dumps(e.to_json(), ensure_ascii=False))
        return
    print_table(HEADER, exemplar_rows(exemplars), title=f"top {len(exemplars)} exemplars ({mode})", out=Console())
