"""Supervised fine-tuning (``method: sft``): LoRA (PEFT) or full-parameter fine-tuning of any causal-LM backbone on
listener turns (NLPCC 2025 Task 8 "structured prompt + LoRA / full fine-tuning"; the standard-LoRA baseline of
ECG-LoRA). See docs/methods/sft.md. The training itself is the shared causal-LM driver
(:func:`empathkit.training.driver.run_training`) with SFT's config as it is.

Python API (also used by EmPO, which starts from an SFT adapter)::

    from empathkit.methods.sft import train_sft, load_sft_model
    run_dir = train_sft(cfg, Path("runs/my-sft"))          # cfg: a full run config dict (method/seed/data/model/train)
    model, tok = load_sft_model(run_dir)                   # PeftModel (or the full model) + left-padding tokenizer
    gen = load({}, run_dir)                                # a Generator for generate/chat/serve
"""

from __future__ import annotations

import logging
from pathlib import Path

from empathkit.methods.base import MethodSpec
from empathkit.methods.causal import RunGenerator
from empathkit.methods.sft.config import SFTConfig, SFTModelConfig, SFTTrainConfig

log = logging.getLogger(__name__)


def train_sft(cfg: dict, run_dir: Path, train_examples=None, valid_examples=None, progress: bool = True) -> Path:
    """Train per ``cfg`` (keys method/seed/data/model/train/generation as in ``empathkit.runconfig.RunConfig``) into
    ``run_dir``; returns ``run_dir`` with the adapter in ``run_dir/"adapter"`` (or full weights in ``"model"``)."""
    from empathkit.training.driver import run_training

    return run_training(cfg, Path(run_dir), train_examples, valid_examples, progress)


def load_sft_model(run_dir: Path):
    """``(peft_model, tokenizer)`` of a trained SFT run (the full model for ``finetune: full``), in eval mode."""
    from empathkit.training.backbone import load_trained

    model, tok, _ = load_trained(run_dir)
    return model, tok


def build_lora_model(model, sft_config):
    """Wrap ``model`` in a PEFT LoRA model (:func:`empathkit.training.backbone.build_lora_model`)."""
    from empathkit.training.backbone import build_lora_model as _b

    return _b(model, sft_config)


def load(config: dict | SFTModelConfig | None = None, run_dir: str | Path | None = None) -> RunGenerator:
    """A generator for a trained SFT run directory (``config`` is ignored: the run's own config is used)."""
    from empathkit.errors import ConfigError
    from empathkit.training.backbone import load_trained

    if run_dir is None:
        raise ConfigError("method 'sft' needs a trained run: `empathkit generate --run RUN_DIR` "
                          "(train one with `empathkit train --method sft -c sft/cpu-small`)")
    model, tok, mc = load_trained(run_dir)
    return RunGenerator(model, tok, mc, "sft", info={"run_dir": str(run_dir), "finetune": mc.finetune},
                        source_dir=run_dir)


def _train(cfg: dict, run_dir: Path, progress: bool = True) -> Path:
    return train_sft(cfg, run_dir, progress=progress)


SPEC = MethodSpec("sft", SFTConfig, load=load, train=_train,
                  description="LoRA (PEFT) or full fine-tuning on listener turns (NLPCC 2025 T8; standard-LoRA baseline)")

__all__ = ["SPEC", "SFTConfig", "SFTModelConfig", "SFTTrainConfig", "train_sft", "load_sft_model",
           "build_lora_model", "load"]
