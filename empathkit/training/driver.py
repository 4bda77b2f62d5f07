"""The shared training driver of the causal-LM fine-tuning methods (SFT as is; ECG-LoRA through ``prepare`` /
``trainer_cls``): AdamW, cosine schedule with warmup, gradient accumulation, evaluation every N steps with early
stopping on validation loss, best-checkpoint keeping and resume after a kill — one process or many
(``accelerate launch``; rank 0 writes the run directory, see :mod:`empathkit.training.distributed`).

Run directory layout::

    config.yaml  versions.json  seed       # empathkit.runs.save_run_meta
    log.jsonl                              # one JSON row per log/eval step (+ per-emotion gradient diagnostics)
    checkpoints/checkpoint-N/              # Trainer checkpoints (adapter + optimizer + scheduler + RNG state)
    adapter/                               # the final (best) PEFT adapter + tokenizer   (finetune: lora)
    model/                                 # the final (best) full weights + tokenizer   (finetune: full)
    train_summary.json                     # steps, runtime, tokens/s, best eval loss, trainable parameters
    done                                   # written last: the run finished
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import TrainerCallback, TrainingArguments

from empathkit.config import validate
from empathkit.errors import ConfigError, DataError, ResourceMissing
from empathkit.training import distributed as dist
from empathkit.training.backbone import build_lora_model, count_parameters, load_base
from empathkit.training.config import LMModelConfig, LMTrainConfig
from empathkit.training.logs import JsonlCallback, JsonlLog

log = logging.getLogger(__name__)

# prepare(model, tokenizer, model_cfg, train_cfg) -> (model, extra trainer kwargs)
Prepare = Callable[[Any, Any, LMModelConfig, LMTrainConfig], "tuple[Any, dict[str, Any]]"]


def use_bf16(setting: bool | str) -> bool:
    """``train.bf16``: true / false, or auto = where bf16 is native (:func:`empathkit.models.backbones.native_bf16`)."""
    if setting == "auto":
        from empathkit.models.backbones import native_bf16

        return native_bf16()
    return bool(setting)


def training_arguments(tc: LMTrainConfig, out_dir: Path, seed: int, has_eval: bool,
                       progress: bool) -> TrainingArguments:
    every = tc.eval_every if has_eval else (tc.save_every or tc.eval_every)
    bf16 = use_bf16(tc.bf16)
    return TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=tc.batch_size,
        per_device_eval_batch_size=tc.eval_batch_size or tc.batch_size, gradient_accumulation_steps=tc.grad_accum,
        learning_rate=tc.lr, num_train_epochs=tc.epochs, max_steps=tc.max_steps, warmup_steps=tc.warmup_ratio,
        lr_scheduler_type=tc.scheduler, weight_decay=tc.weight_decay, max_grad_norm=tc.max_grad_norm,
        optim="adamw_torch", eval_strategy="steps" if has_eval else "no", eval_steps=every if has_eval else None,
        save_strategy="steps", save_steps=every, save_total_limit=tc.save_total_limit,
        load_best_model_at_end=has_eval, metric_for_best_model="eval_loss" if has_eval else None,
        greater_is_better=False if has_eval else None, logging_steps=tc.log_every, logging_first_step=True,
        report_to="none", seed=seed, data_seed=seed, dataloader_num_workers=tc.num_workers, bf16=bf16,
        # transformers refuses bf16 without a GPU unless told the run is on the CPU (CPU autocast is what we want)
        use_cpu=bf16 and not torch.cuda.is_available(),
        train_sampling_strategy=tc.sampling,
        remove_unused_columns=False, disable_tqdm=not progress, gradient_checkpointing=tc.gradient_checkpointing,
        dataloader_pin_memory=torch.cuda.is_available())


def _checkpoint_step(checkpoint: str | Path) -> int:
    """The global step a Trainer checkpoint was saved at (``trainer_state.json``; else the ``checkpoint-N`` name)."""
    state = Path(checkpoint) / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text(encoding="utf-8")).get("global_step", 0))
    tail = Path(checkpoint).name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def resolve_resume(tc: LMTrainConfig, run_dir: Path) -> str | None:
    """The checkpoint ``train.resume`` names: none, the last one under ``run_dir/checkpoints``, or a path."""
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
    if last is None and dist.is_main():
        log.warning("train.resume=true but %s has no checkpoint: starting from scratch", ckdir)
    return last


def training_examples(rc, tc: LMTrainConfig, train_examples=None, valid_examples=None):
    """Train / valid examples of a run config (valid only with early stopping); given lists are kept."""
    from empathkit.runconfig import examples_for

    if train_examples is None:
        train_examples = examples_for(rc, "train")
    if valid_examples is None and tc.early_stopping_patience is not None and rc.data.valid_limit != 0:
        try:
            valid_examples = examples_for(rc, "valid")
        except ResourceMissing:
            valid_examples = None
        except DataError as e:  # a JSONL file without a valid split: train without early stopping, and say so
            if e.field != "split":
                raise
            log.warning("no validation examples (%s): training without early stopping", e)
            valid_examples = None
    if not train_examples:
        raise ConfigError("no training examples (check data.source / data.train_limit)")
    return train_examples, valid_examples


def run_training(cfg: dict, run_dir: Path, train_examples=None, valid_examples=None, progress: bool = True,
                 *, trainer_cls=None, prepare: Prepare | None = None, model_cfg_cls=LMModelConfig,
                 train_cfg_cls=LMTrainConfig, extra_summary=None,
                 example_prompt: Callable[..., "str | None"] | None = None) -> Path:
    """Train per ``cfg`` (a whole run config) into ``run_dir``. ``prepare`` lets a method change the model (ECG-LoRA
    attaches its gate) and pass extra trainer kwargs; ``extra_summary(trainer, mc, tc) -> dict`` (rank 0) adds to
    ``train_summary.json``; ``example_prompt(example) -> system prompt`` replaces the model config's
    (``mc.example_prompt()``) for the training and validation rows (REG: each example's attribute tags)."""
    from empathkit.models.encoding import encode_examples
    from empathkit.progress import quiet_trainer_callbacks
    from empathkit.runconfig import resolve
    from empathkit.runs import save_run_meta, set_seed
    from empathkit.training.collator import Collator
    from empathkit.training.trainer import CausalLMTrainer

    rc = resolve(cfg)
    mc = validate(model_cfg_cls, rc.model, "model")
    tc = validate(train_cfg_cls, rc.train, "train")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main():
        save_run_meta(run_dir, rc.model_dump(), rc.seed)
    set_seed(rc.seed)
    train_examples, valid_examples = training_examples(rc, tc, train_examples, valid_examples)

    model, tok = load_base(mc)
    if mc.finetune == "lora":
        model = build_lora_model(model, mc)
    trainer_kwargs: dict[str, Any] = {}
    if prepare is not None:
        model, trainer_kwargs = prepare(model, tok, mc, tc)
    params = count_parameters(model)
    if dist.is_main():
        log.info("trainable parameters: %s of %s (%.4f%%)", f"{params['trainable']:,}", f"{params['total']:,}",
                 100 * params["trainable"] / params["total"])

    sp = example_prompt or mc.example_prompt()
    show = progress and dist.is_main()
    train_rows = encode_examples(tok, train_examples, sp, tc.max_length, tc.train_on, show)
    valid_rows = encode_examples(tok, valid_examples, sp, tc.max_length, tc.train_on, show) if valid_examples else None
    has_eval = bool(valid_rows)

    args = training_arguments(tc, run_dir / "checkpoints", rc.seed, has_eval, progress)
    sink = JsonlLog(run_dir / "log.jsonl")
    callbacks: list[TrainerCallback] = [JsonlCallback(sink)]
    if has_eval and tc.early_stopping_patience:
        from transformers import EarlyStoppingCallback

        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    cls = trainer_cls or CausalLMTrainer
    trainer = cls(model=model, args=args, train_dataset=train_rows, eval_dataset=valid_rows,
                  data_collator=Collator(tok), processing_class=tok, callbacks=callbacks, sink=sink, train_cfg=tc,
                  **trainer_kwargs)
    quiet_trainer_callbacks(trainer)  # one progress bar, no printed log dicts unless --verbose
    resume = resolve_resume(tc, run_dir)
    if resume and trainer.is_world_process_zero():
        dropped = sink.truncate_after(_checkpoint_step(resume))
        if dropped:
            log.info("resuming from %s: dropped %d log.jsonl row(s) of the steps that will be redone", resume, dropped)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - t0

    tok.padding_side = "left"
    trainer.model.config.use_cache = True
    if trainer.is_world_process_zero():
        _save_final(trainer, tok, mc, run_dir)
        summary = {
            "finetune": mc.finetune, "global_steps": trainer.state.global_step, "train_examples": len(train_rows),
            "valid_examples": len(valid_rows or []), "train_runtime_s": result.metrics.get("train_runtime", wall),
            "tokens_seen": trainer.tokens_seen,
            "train_tokens_per_s": trainer.tokens_seen / max(trainer.step_seconds, 1e-9),
            "train_step_seconds": trainer.step_seconds, "diagnostics_seconds": trainer.diag_seconds,
            "wall_seconds": wall, "train_loss": result.metrics.get("train_loss"),
            "best_eval_loss": trainer.state.best_metric, "best_checkpoint": trainer.state.best_model_checkpoint,
            "resumed_from": resume, "parameters": params, "trainable_pct": 100 * params["trainable"] / params["total"],
            "world_size": trainer.args.world_size,  # processes; tokens_seen / tokens per s are rank 0's
        }
        if extra_summary is not None:
            summary.update(extra_summary(trainer, mc, tc))
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        (run_dir / "done").write_text("ok\n")
    dist.barrier()  # the other ranks return once the run directory is complete (EmPO's DPO stage reads it next)
    return run_dir


def _save_final(trainer, tok, mc: LMModelConfig, run_dir: Path) -> None:
    if mc.finetune == "lora":
        trainer.model.save_pretrained(run_dir / "adapter")
        tok.save_pretrained(run_dir / "adapter")
        trainer.save_extra(run_dir / "adapter")
    else:
        trainer.model.save_pretrained(run_dir / "model")
        tok.save_pretrained(run_dir / "model")
