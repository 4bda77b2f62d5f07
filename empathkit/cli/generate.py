"""``empathkit generate``: run a method (or a trained run) over a data split and save predictions.

The work is :func:`empathkit.api.run_generate`; this module only turns the arguments into a run config.
``--resume <run dir>`` continues an interrupted generate run where it stopped (same outputs as an uninterrupted run).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors


SPLITS = ("train", "valid", "test")


def generate_config(overrides: List[str], method: str, config: Optional[str], run: Optional[Path],
                    split: Optional[str], limit: Optional[int], out: Optional[str]) -> dict:
    """The run config of a ``generate`` call: a trained run's own config (without ``train``) or the method's, then
    the recipe, the overrides and the options."""
    from empathkit.api import read_run_dir_config
    from empathkit.config import load_config

    base = {"method": method}
    if run is not None:
        saved = read_run_dir_config(run)  # a missing / corrupt run dir or config.yaml is a one-line error
        if config is None:
            base = saved
            base.pop("train", None)
    cfg = load_config(config, overrides or [], defaults=base)
    if config is None and run is None:
        cfg["method"] = method
    if split:
        cfg.setdefault("data", {})["split"] = split
    s = cfg.get("data", {}).get("split", "test")
    if s not in SPLITS:
        from empathkit.errors import ConfigError

        raise ConfigError(f"unknown split {s!r} ({', '.join(SPLITS)})")
    if limit is not None:
        cfg["data"][f"{s}_limit"] = limit
    if out:
        cfg["output_dir"] = out
    return cfg


@friendly_errors
def generate(overrides: List[str] = typer.Argument(None, help="key=value config overrides, e.g. data.test_limit=50"),
             method: str = typer.Option("prompt", help="registered method name (see `empathkit methods`)"),
             config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config or recipe name"),
             run: Optional[Path] = typer.Option(None, help="a trained run directory to generate with"),
             split: Optional[str] = typer.Option(None, help="train | valid | test"),
             limit: Optional[int] = typer.Option(None, help="number of examples (seeded, emotion-stratified subset)"),
             out: Optional[str] = typer.Option(None, help="parent folder of the run directory (default runs/)"),
             resume: Optional[Path] = typer.Option(None, "--resume", help="an interrupted generate run directory to "
                                                   "finish (its own config; no other option)")):
    """Generate responses; writes <out>/<time>-generate-<method>/predictions.jsonl + config + versions."""
    from empathkit.api import run_generate

    if resume is not None:
        given = [n for n, v in (("overrides", overrides), ("--config", config), ("--run", run), ("--split", split),
                                ("--limit", limit), ("--out", out)) if v]
        if given:
            from empathkit.errors import ConfigError

            raise ConfigError(f"--resume continues a run with its own config: drop {', '.join(given)}")
        run_dir = run_generate(resume=resume)
        console.print(f"predictions: {run_dir / 'predictions.jsonl'}")
        return
    cfg = generate_config(overrides or [], method, config, run, split, limit, out)
    run_dir = run_generate(cfg, from_run=run)
    console.print(f"predictions: {run_dir / 'predictions.jsonl'}")
