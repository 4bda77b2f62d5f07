"""EmPO (Sotolar et al.): SFT, then DPO on preference pairs whose rejected reply comes from a conversation with the
Plutchik-opposite emotion, re-drawn every epoch. See docs/methods/empo.md.

Python API::

    from empathkit.methods.empo import train_empo, load
    train_empo(cfg, Path("runs/empo"))          # cfg: run config with method: empo, train: {<sft keys>, dpo: {...}}
    gen = load({}, run_dir=Path("runs/empo"))   # Generator: SFT model + DPO adapter
"""

from __future__ import annotations

from pathlib import Path

from empathkit.methods.base import MethodSpec
from empathkit.methods.causal import RunGenerator
from empathkit.methods.empo.config import DPOSection, EmpoConfig, EmpoTrainConfig


def load(config: dict | None = None, run_dir: str | Path | None = None) -> RunGenerator:
    """A generator for a trained EmPO run directory (``config`` is ignored: the run's own config is used)."""
    from empathkit.errors import ConfigError
    from empathkit.methods.empo.trainer import load_empo_model

    if run_dir is None:
        raise ConfigError("method 'empo' needs a trained run: `empathkit generate --run RUN_DIR` "
                          "(train one with `empathkit train --method empo -c empo/cpu-small`)")
    model, tok, mc = load_empo_model(run_dir)
    return RunGenerator(model, tok, mc, "empo", info={"run_dir": str(run_dir)}, source_dir=run_dir)


def train_empo(cfg: dict, run_dir: str | Path, progress: bool = True, **kwargs) -> Path:
    from empathkit.methods.empo.trainer import train_empo as _t

    return _t(cfg, run_dir, progress=progress, **kwargs)


def _train(cfg: dict, run_dir: Path, progress: bool = True) -> Path:
    return train_empo(cfg, run_dir, progress=progress)


SPEC = MethodSpec("empo", EmpoConfig, load=load, train=_train,
                  description="EmPO: SFT then DPO on Plutchik-opposite preference pairs re-drawn every epoch")

__all__ = ["SPEC", "EmpoConfig", "EmpoTrainConfig", "DPOSection", "train_empo", "load"]
