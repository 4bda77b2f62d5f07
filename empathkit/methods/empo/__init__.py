"""EmPO (Sotolar et al.): SFT, then DPO on preference pairs whose rejected reply comes from a conversation with the
Plutchik-opposite emotion, re-drawn every epoch. See docs/methods/empo.md.

Python API::

    from empathkit.methods.empo import train_empo, load
    train_empo(cfg, Path("runs/empo"))          # cfg: run config with method: empo, train: {<sft keys>, dpo: {...}}
    gen = load({}, run_dir=Path("runs/empo"))   # Generator: SFT model + DPO adapter
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from empathkit.methods.base import Generator, MethodSpec
from empathkit.methods.empo.config import DPOSection, EmpoConfig, EmpoTrainConfig
from empathkit.types import Example


class EmpoGenerator(Generator):
    name = "empo"

    def __init__(self, model, tokenizer, model_cfg, info: dict[str, Any] | None = None):
        from empathkit.methods.sft.trainer import system_prompt_fn

        self._sp = system_prompt_fn(model_cfg)
        super().__init__(model, tokenizer, self._sp(None), info=info)
        self.config = model_cfg

    def system_prompt_for(self, ex: Example) -> str | None:
        return self._sp(ex)


def load(config: dict | None = None, run_dir: str | Path | None = None) -> EmpoGenerator:
    """A generator for a trained EmPO run directory (``config`` is ignored: the run's own config is used)."""
    from empathkit.errors import ConfigError
    from empathkit.methods.empo.trainer import load_empo_model

    if run_dir is None:
        raise ConfigError("method 'empo' needs a trained run: `empathkit generate --run RUN_DIR` "
                          "(train one with `empathkit train --method empo -c empo/cpu-small`)")
    model, tok, mc = load_empo_model(run_dir)
    return EmpoGenerator(model, tok, mc, info={"run_dir": str(run_dir)})


def train_empo(cfg: dict, run_dir: str | Path, progress: bool = True, **kwargs) -> Path:
    from empathkit.methods.empo.trainer import train_empo as _t

    return _t(cfg, run_dir, progress=progress, **kwargs)


def _train(cfg: dict, run_dir: Path, progress: bool = True) -> Path:
    return train_empo(cfg, run_dir, progress=progress)


SPEC = MethodSpec("empo", EmpoConfig, load=load, train=_train,
                  description="EmPO: SFT then DPO on Plutchik-opposite preference pairs re-drawn every epoch")

__all__ = ["SPEC", "EmpoConfig", "EmpoTrainConfig", "DPOSection", "EmpoGenerator", "train_empo", "load"]
