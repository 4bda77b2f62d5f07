"""Where a FiD (encoder–decoder) REG stage keeps its weights and how they load back: ``model/`` (full fine-tuning) or
``adapter/`` (PEFT LoRA of a seq2seq backbone). Shared by training (``reg/fid_train.py``) and loading
(``reg/method.py``)."""

from __future__ import annotations

import json
from pathlib import Path

from empathkit.errors import ConfigError

MODEL_DIR, ADAPTER_DIR = "model", "adapter"


def stage_weights(stage_dir: Path) -> Path | None:
    """The weights folder of a FiD stage directory: ``adapter/`` (LoRA) or ``model/`` (full), or None."""
    for name in (ADAPTER_DIR, MODEL_DIR):
        d = Path(stage_dir) / name
        if (d / "adapter_config.json").is_file() or (d / "config.json").is_file():
            return d
    return None


def is_fid_stage(stage_dir: Path) -> bool:
    """Whether a stage directory holds FiD (encoder–decoder) weights: full (``model/config.json``) or a LoRA adapter
    of a seq2seq model (``adapter/adapter_config.json`` with ``task_type`` SEQ_2_SEQ_LM)."""
    d = Path(stage_dir)
    if (d / MODEL_DIR / "config.json").is_file():
        return bool(json.loads((d / MODEL_DIR / "config.json").read_text(encoding="utf-8")).get("is_encoder_decoder"))
    a = d / ADAPTER_DIR / "adapter_config.json"
    return a.is_file() and json.loads(a.read_text(encoding="utf-8")).get("task_type") == "SEQ_2_SEQ_LM"


def load_fid_weights(stage_dir: Path, mc, trainable: bool = False):
    """``(model, tokenizer)`` of a FiD stage: full weights, or the base backbone + the LoRA adapter (trainable: kept
    as a PEFT model to train on; else merged for generation)."""
    from empathkit.models.backbones import load_backbone

    w = stage_weights(stage_dir)
    if w is None:
        raise ConfigError(f"{stage_dir} has no trained FiD weights (model/ or adapter/)")
    if w.name == MODEL_DIR:
        return load_backbone(str(w), mc.dtype)
    from peft import PeftModel

    base, tok = load_backbone(mc.backbone, mc.dtype)
    model = PeftModel.from_pretrained(base, str(w), is_trainable=trainable)
    return (model if trainable else model.merge_and_unload()), tok
