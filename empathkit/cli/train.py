"""``empathkit train``: train a method from a recipe / YAML config plus ``key=value`` overrides; prints the run dir.

    empathkit train --method sft -c sft/cpu-small train.max_steps=60
    empathkit train -c ecg-lora/cpu-small train.ablation=no-con-loss
    empathkit train -c ecg-lora/cpu-small train.resume=true            # continue the last unfinished run
    empathkit train --run-dir runs/20260101-ecg -c ecg-lora/cpu-small train.resume=true
    accelerate launch -m empathkit.cli.main train -c ecg-lora/paper-qwen2-7b   # multi-GPU

The work is :func:`empathkit.api.train`; this module only parses the arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors


@friendly_errors
def train(overrides: List[str] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=60"),
          method: Optional[str] = typer.Option(None, help="sft | ecg-lora | empo (default: the config's method)"),
          config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config or recipe name, e.g. "
                                                                            "ecg-lora/cpu-small"),
          run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="train into (or resume) this run dir"),
          out: Optional[str] = typer.Option(None, help="parent folder of new run dirs (default runs/)"),
          quiet: bool = typer.Option(False, help="no progress bars")):
    """Train a method; the run dir (config, versions, seed, log.jsonl, checkpoints, adapter) is printed at the end."""
    from empathkit import api
    from empathkit.config import load_config
    from empathkit.errors import ConfigError
    from empathkit.training.distributed import is_main

    cfg = load_config(config, overrides or [])
    if method:
        cfg["method"] = method
    if not cfg.get("method"):
        raise ConfigError("no method: pass --method sft|ecg-lora|empo or a recipe (-c ecg-lora/cpu-small)")
    if out:
        cfg["output_dir"] = out
    rd = api.train(cfg, run_dir, progress=not quiet)
    if is_main():  # under accelerate launch every process gets here; one prints
        console.print(f"run dir: {rd}")
        print(rd)
