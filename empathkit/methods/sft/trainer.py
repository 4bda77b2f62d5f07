"""SFT training on transformers' ``Trainer``: AdamW, cosine schedule with warmup, gradient accumulation, evaluation
every N steps with early stopping on validation loss, best-checkpoint keeping and resume after a kill.

Run directory layout (``train_sft``)::

    config.yaml  versions.json  seed       # empathkit.runs.save_run_meta
    log.jsonl                              # one JSON row per log/eval step (+ per-emotion gradient diagnostics)
    checkpoints/checkpoint-N/              # Trainer checkpoints (adapter + optimizer + scheduler + RNG state)
    adapter/                               # the final (best) PEFT adapter + tokenizer   (finetune: lora)
    model/                                 # the final (best) full weights + tokenizer   (finetune: full)
    train_summary.json                     # steps, runtime, tokens/s, best eval loss, trainable parameters
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from empathkit.config import validate
from empathkit.data.emotions import EMOTIONS, gradient_group, polarity
from empathkit.errors import ConfigError, ResourceMissing
from empathkit.methods.sft.config import SFTModelConfig, SFTTrainConfig

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# model construction
def load_base(model_cfg: SFTModelConfig):
    """A fresh (trainable) copy of the backbone with GGUF quantisation markers cleared (Trainer refuses them)."""
    from empathkit.models import backbones

    model, tok = backbones.load_backbone(model_cfg.backbone, model_cfg.dtype)
    if getattr(model, "hf_quantizer", None) is not None or getattr(model, "is_quantized", False):
        backbones._clear_quantization_markers(model)
    model.config.use_cache = False
    return model, tok


def build_lora_model(model, sft_config):
    """Wrap ``model`` in a PEFT LoRA model from an ``SFTConfig`` / ``SFTModelConfig`` / ``model`` dict."""
    from peft import LoraConfig, get_peft_model

    mc = _model_cfg(sft_config)
    lcfg = LoraConfig(r=mc.lora_r, lora_alpha=mc.lora_alpha, lora_dropout=mc.lora_dropout,
                      target_modules=mc.target_modules, task_type="CAUSAL_LM", bias="none")
    try:
        return get_peft_model(model, lcfg)
    except ValueError as e:
        raise ConfigError(f"model.target_modules={mc.target_modules!r}: {e}") from None


def _model_cfg(cfg) -> SFTModelConfig:
    if isinstance(cfg, SFTModelConfig):
        return cfg
    if hasattr(cfg, "model") and isinstance(cfg.model, SFTModelConfig):
        return cfg.model
    if isinstance(cfg, dict):
        return validate(SFTModelConfig, cfg.get("model", cfg) if "backbone" not in cfg and "model" in cfg else cfg,
                        "model")  # type: ignore[return-value]
    raise ConfigError(f"expected an SFT config, got {type(cfg).__name__}")


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


def system_prompt_fn(mc: SFTModelConfig):
    """``example -> system prompt`` for training, built like the generator's (:mod:`empathkit.models.templates`)."""
    from empathkit.models.templates import system_prompt_builder

    sp = system_prompt_builder(mc.template, mc.use_emotion, fixed=mc.system_prompt)
    return lambda ex: sp(emotion=ex.emotion if ex is not None else None)


# ----------------------------------------------------------------------------------------------------------------
# logging
class JsonlLog:
    """Append-only JSONL log (``log.jsonl`` in the run dir)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({**row, "time": round(time.time(), 2)}, ensure_ascii=False) + "\n")


class JsonlCallback(TrainerCallback):
    """Mirrors the Trainer's own logs (loss, learning rate, grad norm, eval loss) into ``log.jsonl``."""

    def __init__(self, sink: JsonlLog):
        self.sink = sink

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
            self.sink.write({"kind": kind, "step": state.global_step, "epoch": state.epoch, **logs})


# ----------------------------------------------------------------------------------------------------------------
# trainer
class SFTTrainer(Trainer):
    """``Trainer`` + token counting + optional per-example LoRA gradient-norm diagnostics by emotion.

    Subclasses (ECG-LoRA) override :meth:`lm_forward` (condition the forward pass), :meth:`extra_losses`,
    :meth:`save_extra` / :meth:`load_extra` (state outside the PEFT adapter) and :meth:`param_groups`.
    """

    def __init__(self, *args, sink: JsonlLog | None = None, train_cfg: SFTTrainConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sink = sink
        self.tcfg = train_cfg or SFTTrainConfig()
        self.tokens_seen = 0
        self.step_seconds = 0.0  # time inside training_step (forward + backward), diagnostics excluded
        self.diag_seconds = 0.0
        self._last_diag_step = -1

    def training_step(self, model, inputs, num_items_in_batch=None):
        t0, d0 = time.perf_counter(), self.diag_seconds
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_seconds += time.perf_counter() - t0 - (self.diag_seconds - d0)
        return loss

    # -- forward / loss ----------------------------------------------------------------------------------------
    def lm_forward(self, model, inputs: dict, emotion_ids: torch.Tensor):
        return model(**inputs)

    def extra_losses(self, model, emotion_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        emotion_ids = inputs.pop("emotion_ids", None)
        if emotion_ids is None:
            emotion_ids = torch.full((inputs["input_ids"].shape[0],), -1, dtype=torch.long)
        if model.training:
            self.tokens_seen += int(inputs["attention_mask"].sum())
            if self.tcfg.log_emotion_grads and self.state.global_step % self.tcfg.log_every == 0 \
                    and self.state.global_step != self._last_diag_step:
                self._last_diag_step = self.state.global_step
                self.log_grad_diagnostics(model, inputs, emotion_ids)
        if num_items_in_batch is not None:
            inputs["num_items_in_batch"] = num_items_in_batch
        outputs = self.lm_forward(model, inputs, emotion_ids)
        loss = outputs.loss
        extra = self.extra_losses(model, emotion_ids)
        for v in extra.values():
            loss = loss + v
        return (loss, outputs) if return_outputs else loss

    # -- optimiser ---------------------------------------------------------------------------------------------
    def param_groups(self, model) -> list[dict]:
        decay = set(self.get_decay_parameter_names(model))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return [{"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay, "name": "lora"},
                {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0, "name": "lora-no-decay"}]

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            m = self.model if model is None else model
            groups = [g for g in self.param_groups(m) if g["params"]]
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, m)
            self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    # -- state beyond the adapter ------------------------------------------------------------------------------
    def save_extra(self, output_dir: str | Path) -> None:
        pass

    def load_extra(self, checkpoint_dir: str | Path) -> None:
        pass

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        self.save_extra(output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.load_extra(resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        if self.state.best_model_checkpoint:
            self.load_extra(self.state.best_model_checkpoint)

    # -- diagnostics ---------------------------------------------------------------------------------------------
    def lora_params(self, model) -> list[torch.nn.Parameter]:
        return [p for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]

    def log_grad_diagnostics(self, model, inputs: dict, emotion_ids: torch.Tensor) -> None:
        """Per-example LM-loss gradient norm of the LoRA parameters (``torch.autograd.grad``: the optimiser's
        ``.grad`` buffers are untouched), averaged per emotion and per group (ECG-LoRA Fig. 6)."""
        params = self.lora_params(model)
        if not params or self.sink is None:
            return
        t0 = time.perf_counter()
        per_emo: dict[str, list[float]] = {}
        for i in range(inputs["input_ids"].shape[0]):
            one = {k: v[i:i + 1] for k, v in inputs.items() if torch.is_tensor(v)}
            out = self.lm_forward(model, one, emotion_ids[i:i + 1])
            grads = torch.autograd.grad(out.loss, params, allow_unused=True)
            norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
            eid = int(emotion_ids[i])
            per_emo.setdefault(EMOTIONS[eid] if 0 <= eid < len(EMOTIONS) else "unknown", []).append(norm)
        by_group: dict[str, list[float]] = {}
        for e, v in per_emo.items():
            if e == "unknown":
                continue
            for g in {gradient_group(e), polarity(e)}:
                by_group.setdefault(g, []).extend(v)
        self.sink.write({"kind": "grad", "step": self.state.global_step,
                         "grad_norm_emotion": {e: sum(v) / len(v) for e, v in per_emo.items()},
                         "grad_count_emotion": {e: len(v) for e, v in per_emo.items()},
                         "grad_norm_group": {g: sum(v) / len(v) for g, v in by_group.items()}})
        self.diag_seconds += time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------------
# entry point
def training_arguments(tc: SFTTrainConfig, out_dir: Path, seed: int, has_eval: bool, progress: bool) -> TrainingArguments:
    every = tc.eval_every if has_eval else (tc.save_every or tc.eval_every)
    return TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.eval_batch_size or tc.batch_size, gradient_accumulation_steps=tc.grad_accum,
        learning_rate=tc.lr, num_train_epochs=tc.epochs, max_steps=tc.max_steps, warmup_steps=tc.warmup_ratio,
        lr_scheduler_type=tc.scheduler, weight_decay=tc.weight_decay, max_grad_norm=tc.max_grad_norm,
        optim="adamw_torch", eval_strategy="steps" if has_eval else "no", eval_steps=every if has_eval else None,
        save_strategy="steps", save_steps=every, save_total_limit=tc.save_total_limit,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss" if has_eval else None,
        greater_is_better=False if has_eval else None, logging_steps=tc.log_every, logging_first_step=True,
        report_to="none", seed=seed, data_seed=seed, dataloader_num_workers=tc.num_workers, bf16=tc.bf16,
        remove_unused_columns=False, disable_tqdm=not progress, gradient_checkpointing=tc.gradient_checkpointing,
        dataloader_pin_memory=torch.cuda.is_available())


def resolve_resume(tc: SFTTrainConfig, run_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if tc.resume is False:
        return None
    if isinstance(tc.resume, str) and tc.resume not in ("true", "last"):
        p = Path(tc.resume)
        if not p.is_dir():
            raise ConfigError(f"train.resume={tc.resume!r}: no such checkpoint directory")
        return str(p)
    ckdir = run_dir / "checkpoints"
    last = get_last_checkpoint(str(ckdir)) if ckdir.is_dir() else None
    if last is None:
        log.warning("train.resume=true but %s has no checkpoint: starting from scratch", ckdir)
    return last


def run_training(cfg: dict, run_dir: Path, train_examples=None, valid_examples=None, progress: bool = True,
                 *, trainer_cls=None, prepare=None, model_cfg_cls=SFTModelConfig, train_cfg_cls=SFTTrainConfig,
                 extra_summary=None) -> Path:
    """Shared training driver for SFT and ECG-LoRA (``prepare(model, tokenizer, mc, tc) -> (model, trainer_kwargs)``
    lets ECG-LoRA attach its gate)."""
    from empathkit.api import examples_for, resolve
    from empathkit.methods.sft.data import Collator, encode_examples
    from empathkit.runs import save_run_meta, set_seed

    rc = resolve(cfg)
    mc = validate(model_cfg_cls, rc.model, "model")
    tc = validate(train_cfg_cls, rc.train, "train")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_run_meta(run_dir, rc.model_dump(), rc.seed)
    set_seed(rc.seed)

    if train_examples is None:
        train_examples = examples_for(rc, "train")
    if valid_examples is None and tc.early_stopping_patience is not None and rc.data.valid_limit != 0:
        try:
            valid_examples = examples_for(rc, "valid")
        except ResourceMissing:
            valid_examples = None
    if not train_examples:
        raise ConfigError("no training examples (check data.source / data.train_limit)")

    model, tok = load_base(mc)
    if mc.finetune == "lora":
        model = build_lora_model(model, mc)
    trainer_kwargs: dict[str, Any] = {}
    if prepare is not None:
        model, trainer_kwargs = prepare(model, tok, mc, tc)
    params = count_parameters(model)
    log.info("trainable parameters: %s of %s (%.4f%%)", f"{params['trainable']:,}", f"{params['total']:,}",
             100 * params["trainable"] / params["total"])

    sp = system_prompt_fn(mc)
    train_rows = encode_examples(tok, train_examples, sp, tc.max_length, tc.train_on, progress)
    valid_rows = encode_examples(tok, valid_examples, sp, tc.max_length, tc.train_on, progress) if valid_examples else None
    has_eval = bool(valid_rows)

    args = training_arguments(tc, run_dir / "checkpoints", rc.seed, has_eval, progress)
    sink = JsonlLog(run_dir / "log.jsonl")
    callbacks: list[TrainerCallback] = [JsonlCallback(sink)]
    if has_eval and tc.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    cls = trainer_cls or SFTTrainer
    trainer = cls(model=model, args=args, train_dataset=train_rows, eval_dataset=valid_rows,
                  data_collator=Collator(tok), processing_class=tok, callbacks=callbacks, sink=sink, train_cfg=tc,
                  **trainer_kwargs)
    resume = resolve_resume(tc, run_dir)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - t0

    tok.padding_side = "left"
    trainer.model.config.use_cache = True
    if mc.finetune == "lora":
        trainer.model.save_pretrained(run_dir / "adapter")
        tok.save_pretrained(run_dir / "adapter")
        trainer.save_extra(run_dir / "adapter")
    else:
        trainer.model.save_pretrained(run_dir / "model")
        tok.save_pretrained(run_dir / "model")
    summary = {
        "finetune": mc.finetune, "global_steps": trainer.state.global_step, "train_examples": len(train_rows),
        "valid_examples": len(valid_rows or []), "train_runtime_s": result.metrics.get("train_runtime", wall),
        "tokens_seen": trainer.tokens_seen,
        "train_tokens_per_s": trainer.tokens_seen / max(trainer.step_seconds, 1e-9),
        "train_step_seconds": trainer.step_seconds, "diagnostics_seconds": trainer.diag_seconds, "wall_seconds": wall,
        "train_loss": result.metrics.get("train_loss"), "best_eval_loss": trainer.state.best_metric,
        "best_checkpoint": trainer.state.best_model_checkpoint, "resumed_from": resume,
        "parameters": params, "trainable_pct": 100 * params["trainable"] / params["total"],
    }
    if extra_summary is not None:
        summary.update(extra_summary(trainer, mc, tc))
    (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (run_dir / "done").write_text("ok\n")
    return run_dir


def load_trained(run_dir: str | Path, model_cfg_cls=SFTModelConfig):
    """``(model, tokenizer, model_config)`` from an SFT-style run dir (PEFT adapter or full weights)."""
    from empathkit.api import resolve
    from empathkit.runs import load_run_config

    rd = Path(run_dir)
    if not (rd / "config.yaml").is_file():
        raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
    rc = resolve(load_run_config(rd))
    mc = validate(model_cfg_cls, rc.model, "model")
    if (rd / "adapter" / "adapter_config.json").is_file():
        from peft import PeftModel

        base, tok = load_base(mc)
        model = PeftModel.from_pretrained(base, rd / "adapter")
    elif (rd / "model" / "config.json").is_file():
        from empathkit.models.backbones import load_backbone

        model, tok = load_backbone(str(rd / "model"), mc.dtype)
    else:
        raise ResourceMissing(f"{rd} has neither adapter/ nor model/: training did not finish (resume with "
                              f"`empathkit train --run-dir {rd} train.resume=true`)")
    model.config.use_cache = True
    model.eval()
    tok.padding_side = "left"
    return model, tok, mc
