"""``empathkit train``: train a method from a recipe / YAML config plus ``key=value`` overrides; prints the run dir.

    empathkit train --method sft -c sft/cpu-small train.max_steps=60
    empathkit train -c ecg-lora/cpu-small train.ablation=no-con-loss
    empathkit train -c ecg-lora/cpu-small train.resume=true            # continue the last unfinished run
    empathkit train --run-dir runs/20260101-ecg -c ecg-lora/cpu-small train.resume=true
    accelerate launch -m empathkit.cli.main train -c ecg-lora/paper-qwen2-7b   # multi-GPU
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors


def latest_unfinished_run(output_dir: str | Path, method: str) -> Path | None:
    """The most recent run dir under ``output_dir`` for ``method`` that has checkpoints but did not finish."""
    from empathkit.runs import load_run_config

    base = Path(output_dir)
    if not base.is_dir():
        return None
    cands = []
    for d in base.iterdir():
        if (d / "config.yaml").is_file() and (d / "checkpoints").is_dir() and not (d / "done").exists():
            try:
                if load_run_config(d).get("method") == method:
                    cands.append(d)
            except Exception:  # noqa: BLE001 — an unreadable run dir is simply not a candidate
                continue
    return max(cands, key=lambda d: (d / "checkpoints").stat().st_mtime) if cands else None


def train_from_config(cfg: dict, run_dir: Path | None = None, progress: bool = True) -> Path:
    """Python equivalent of the command: validate, pick/create the run dir, call the method's ``train``."""
    from empathkit.api import method_spec, resolve
    from empathkit.errors import ConfigError
    from empathkit.runs import new_run_dir

    rc = resolve(cfg)
    spec = method_spec(rc.method)
    if spec.train is None:
        raise ConfigError(f"method '{rc.method}' has nothing to train (use `empathkit generate --method {rc.method}`)")
    resume = rc.train.get("resume", False)
    if run_dir is None and (resume is True or resume == "true"):
        run_dir = latest_unfinished_run(rc.output_dir, rc.method)
        if run_dir is None:
            console.print(f"no unfinished {rc.method} run under {rc.output_dir}/: starting a new one")
    if run_dir is None:
        run_dir = new_run_dir(rc.output_dir, rc.run_name or rc.method)
    return spec.train(cfg, Path(run_dir), progress=progress)


@friendly_errors
def train(overrides: List[str] = typer.Argument(None, help="key=value overrides, e.g. train.max_steps=60"),
          method: Optional[str] = typer.Option(None, help="sft | ecg-lora | empo (default: the config's method)"),
          config: Optional[str] = typer.Option(None, "--config", "-c", help="YAML config or recipe name, e.g. "
                                                                            "ecg-lora/cpu-small"),
          run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="train into (or resume) this run dir"),
          out: Optional[str] = typer.Option(None, help="parent folder of new run dirs (default runs/)"),
          quiet: bool = typer.Option(False, help="no progress bars")):
    """Train a method; the run dir (config, versions, seed, log.jsonl, checkpoints, adapter) is printed at the end."""
    from empathkit.config import load_config
    from empathkit.errors import ConfigError

    cfg = load_config(config, overrides or [])
    if method:
        cfg["method"] = method
    if not cfg.get("method"):
        raise ConfigError("no method: pass --method sft|ecg-lora|empo or a recipe (-c ecg-lora/cpu-small)")
    if out:
        cfg["output_dir"] = out
    rd = train_from_config(cfg, run_dir, progress=not quiet)
    console.print(f"run dir: {rd}")
    print(rd)
