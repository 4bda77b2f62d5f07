"""The trainable model: a fresh backbone copy, its LoRA wrapping, parameter counts, and a trained run loaded back
(PEFT adapter or full weights) for generation or a next training stage."""

from __future__ import annotations

from pathlib import Path

from empathkit.config import validate
from empathkit.errors import ConfigError, ResourceMissing
from empathkit.training.config import LMModelConfig


def load_base(model_cfg: LMModelConfig):
    """A fresh (trainable) copy of the backbone with GGUF quantisation markers cleared (Trainer refuses them)."""
    from empathkit.models import backbones

    model, tok = backbones.load_backbone(model_cfg.backbone, model_cfg.dtype)
    if backbones.is_encoder_decoder(model):
        raise ConfigError(f"model.backbone={model_cfg.backbone!r} is an encoder–decoder model; this method trains "
                          "causal LMs (use method 'seq2seq' for T5 / FLAN-T5 / BART backbones)")
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        backbones._clear_quantization_markers(model)
    model.config.use_cache = False
    return model, tok


def model_section(cfg) -> LMModelConfig:
    """The ``model`` section of a method config object, a model config, or a ``model`` / whole-config dict."""
    if isinstance(cfg, LMModelConfig):
        return cfg
    if isinstance(getattr(cfg, "model", None), LMModelConfig):
        return cfg.model
    if isinstance(cfg, dict):
        return validate(LMModelConfig, cfg.get("model", cfg) if "backbone" not in cfg and "model" in cfg else cfg,
                        "model")  # type: ignore[return-value]
    raise ConfigError(f"expected a causal-LM model config, got {type(cfg).__name__}")


def build_lora_model(model, config):
    """Wrap ``model`` in a PEFT LoRA model from a method config / ``model`` config / ``model`` dict."""
    from peft import LoraConfig, get_peft_model

    mc = model_section(config)
    lcfg = LoraConfig(r=mc.lora_r, lora_alpha=mc.lora_alpha, lora_dropout=mc.lora_dropout,
                      target_modules=mc.target_modules, task_type="CAUSAL_LM", bias="none")
    try:
        return get_peft_model(model, lcfg)
    except ValueError as e:
        raise ConfigError(f"model.target_modules={mc.target_modules!r}: {e}") from None


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def load_trained(run_dir: str | Path, model_cfg_cls: type[LMModelConfig] = LMModelConfig):
    """``(model, tokenizer, model_config)`` from a fine-tuning run dir (PEFT adapter or full weights), in eval mode
    with a left-padding tokenizer."""
    from empathkit.runconfig import resolve
    from empathkit.runs import load_run_config

    rd = Path(run_dir)
    if not (rd / "config.yaml").is_file():
        raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
    rc = resolve(load_run_config(rd))
    mc = validate(model_cfg_cls, rc.model, "model")
    if (rd / "adapter" / "adapter_config.json").is_file():
        from peft import PeftModel

        base, tok = load_base(mc)  # type: ignore[arg-type]
        model = PeftModel.from_pretrained(base, rd / "adapter")
    elif (rd / "model" / "config.json").is_file():
        from empathkit.models.backbones import load_backbone

        model, tok = load_backbone(str(rd / "model"), mc.dtype)  # type: ignore[attr-defined]
    else:
        raise ResourceMissing(f"{rd} has neither adapter/ nor model/: training did not finish (resume with "
                              f"`empathkit train --run-dir {rd} train.resume=true`)")
    model.config.use_cache = True
    model.eval()
    tok.padding_side = "left"
    return model, tok, mc
