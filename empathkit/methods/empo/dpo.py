"""DPO with TRL's ``DPOTrainer`` on EmPO preference data, re-drawing the rejected completions every epoch.

Reference model: the policy is a plain causal LM (the SFT model with its SFT adapter merged in memory) and TRL gets a
``peft_config``, so TRL creates the one trainable DPO adapter itself and computes the reference log-probs with that
adapter disabled — exactly the SFT model, without a second model copy (with ``ref_model=None`` and an already wrapped
``PeftModel``, TRL 1.x would instead add a frozen "ref" copy of the adapter; we avoid that and check it).

Per-epoch re-draw inside one training run: the draws of all epochs are built up front (seeded by (seed, epoch)) and
tokenised once by TRL; :class:`EpochRedrawDataset` then serves only the rows of the current epoch, switched by
:class:`RedrawCallback` at ``on_epoch_begin`` (and by accelerate's ``set_epoch``). Optimiser, scheduler (cosine over
all epochs) and checkpoints are those of the single run; a resumed run serves the right epoch's draw again.

Multi-process (``accelerate launch``): every rank builds the same draws (seeded), the sampler shards them, TRL's
trainer averages the gradients; rank 0 alone writes the draws, the adapter and the logs.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from transformers import TrainerCallback

from empathkit.data.preference import PreferenceBuilder, PreferencePair, PreferenceReport, write_jsonl
from empathkit.errors import ConfigError
from empathkit.methods.empo.config import DPOSection
from empathkit.models.chat import fit_messages
from empathkit.training import distributed as dist

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# lengths
def prompt_token_length(tokenizer, messages: list[dict[str, str]]) -> int:
    return len(tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                             return_dict=True)["input_ids"])


def completion_token_length(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 2  # + end-of-turn tokens of the template


def percentile_lengths(tokenizer, pairs: Sequence[PreferencePair], q: float = 95.0) -> tuple[int, int]:
    """(prompt, completion) token lengths at the ``q``-th percentile of the data (prompts counted once each)."""
    prompts = {p.example_id: p.prompt for p in pairs}
    p_lens = [prompt_token_length(tokenizer, m) for m in prompts.values()]
    texts = {p.chosen for p in pairs} | {p.rejected for p in pairs}
    c_lens = [completion_token_length(tokenizer, t) for t in texts]
    return int(math.ceil(np.percentile(p_lens, q))), int(math.ceil(np.percentile(c_lens, q)))


# ----------------------------------------------------------------------------------------------------------------
# datasets
def trl_rows(pairs: Sequence[PreferencePair], tokenizer, max_prompt_length: int | None) -> list[dict[str, Any]]:
    """TRL's conversational preference format; prompts longer than ``max_prompt_length`` lose their oldest turns."""
    fitted: dict[str, list[dict[str, str]]] = {}
    rows = []
    for p in pairs:
        if p.example_id not in fitted:
            fitted[p.example_id] = fit_messages(tokenizer, p.prompt, max_prompt_length)
        rows.append({"prompt": fitted[p.example_id],
                     "chosen": [{"role": "assistant", "content": p.chosen}],
                     "rejected": [{"role": "assistant", "content": p.rejected}],
                     "draw_epoch": p.epoch, "pair_id": p.id, "rejected_source_id": p.rejected_source_id})
    return rows


class EpochRedrawDataset(torch.utils.data.Dataset):
    """Serves the tokenised rows of one epoch's draw; ``set_epoch(e)`` switches to draw ``e`` (cycling if needed)."""

    def __init__(self, base, record: bool = False):
        self.base = base
        epochs = base["draw_epoch"]
        self.index: dict[int, list[int]] = {}
        for i, e in enumerate(epochs):
            self.index.setdefault(int(e), []).append(i)
        sizes = {e: len(v) for e, v in self.index.items()}
        if len(set(sizes.values())) != 1:
            raise ConfigError(f"every epoch's draw must have the same number of pairs, got {sizes}")
        self.draws = sorted(self.index)
        self.epoch = self.draws[0]
        self.record = record
        self.served: list[tuple[int, str]] = []  # (epoch, rejected_source_id) when record=True (tests, debugging)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.draws[int(epoch) % len(self.draws)]

    def __len__(self) -> int:
        return len(self.index[self.draws[0]])

    def __getitem__(self, i: int) -> dict:
        row = self.base[self.index[self.epoch][i]]
        if self.record:
            self.served.append((self.epoch, row["rejected_source_id"]))
        return row


class RedrawCallback(TrainerCallback):
    """Switches the training dataset to the draw of the epoch that begins."""

    def __init__(self, dataset: EpochRedrawDataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        epoch = int(math.floor((state.epoch or 0.0) + 1e-6))
        self.dataset.set_epoch(epoch)
        if state.is_world_process_zero:
            log.info("DPO epoch %d: serving rejected draw %d", epoch, self.dataset.epoch)


# ----------------------------------------------------------------------------------------------------------------
# trainer
def lora_config_for(dcfg: DPOSection, like=None):
    """The DPO LoRA: the SFT adapter's config (when given) with any field set in ``train.dpo.lora`` overridden."""
    from peft import LoraConfig

    base = dict(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    if like is not None:
        base.update(r=like.r, lora_alpha=like.lora_alpha, lora_dropout=like.lora_dropout,
                    target_modules=sorted(like.target_modules) if isinstance(like.target_modules, set)
                    else like.target_modules)
    lo = dcfg.lora
    if lo.r is not None:
        base["r"] = lo.r
    if lo.alpha is not None:
        base["lora_alpha"] = lo.alpha
    if lo.dropout is not None:
        base["lora_dropout"] = lo.dropout
    if lo.target_modules is not None:
        base["target_modules"] = lo.target_modules
    return LoraConfig(task_type="CAUSAL_LM", bias="none", **base)


def dpo_args(dcfg: DPOSection, output_dir: Path, seed: int, max_length: int | None, progress: bool = True):
    from trl import DPOConfig

    use_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return DPOConfig(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        beta=dcfg.beta, learning_rate=dcfg.learning_rate, num_train_epochs=dcfg.epochs, max_steps=dcfg.max_steps,
        lr_scheduler_type=dcfg.lr_scheduler_type, warmup_steps=dcfg.warmup_ratio, loss_type=[dcfg.loss_type],
        per_device_train_batch_size=dcfg.batch_size, gradient_accumulation_steps=dcfg.gradient_accumulation_steps,
        weight_decay=dcfg.weight_decay, max_grad_norm=dcfg.max_grad_norm, max_length=max_length,
        gradient_checkpointing=dcfg.gradient_checkpointing, bf16=use_bf16, fp16=False,
        logging_steps=dcfg.logging_steps, save_strategy="steps", save_steps=dcfg.save_steps,
        save_total_limit=dcfg.save_total_limit, report_to="none", disable_tqdm=not progress,
        dataloader_num_workers=0, precompute_ref_log_probs=False,
    )


def build_dpo_trainer(model, tokenizer, epoch_pairs: Sequence[Sequence[PreferencePair]], dcfg: DPOSection,
                      output_dir: Path, seed: int = 0, max_prompt_length: int | None = None,
                      max_completion_length: int | None = None, lora_like=None, progress: bool = True,
                      record_draws: bool = False):
    """A ``DPOTrainer`` over a plain causal LM (the merged SFT model) that trains a fresh LoRA adapter.

    ``epoch_pairs[e]`` is the draw served in epoch ``e``. Returns ``(trainer, redraw_dataset)``.
    """
    import datasets
    from trl import DPOTrainer

    from empathkit.progress import quiet_trainer_callbacks
    from empathkit.runs import set_seed

    if getattr(model, "peft_config", None):
        raise ConfigError("build_dpo_trainer expects a plain model (merge the SFT adapter first): TRL would keep a "
                          "frozen copy of an existing adapter as reference instead of disabling the adapter")
    rows = [r for pairs in epoch_pairs for r in trl_rows(pairs, tokenizer, max_prompt_length)]
    if not rows:
        raise ConfigError("no preference pairs to train on")
    max_len = (max_prompt_length + max_completion_length) if max_prompt_length and max_completion_length else None
    args = dpo_args(dcfg, output_dir, seed, max_len, progress)
    set_seed(seed)
    model.config.use_cache = False
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=datasets.Dataset.from_list(rows),
                         processing_class=tokenizer, peft_config=lora_config_for(dcfg, lora_like))
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if "ref" in getattr(unwrapped, "peft_config", {}) or trainer.ref_model is not None:
        raise RuntimeError("TRL created a separate reference; EmPO expects the adapter-disabled policy as reference")
    redraw = EpochRedrawDataset(trainer.train_dataset, record=record_draws)
    trainer.train_dataset = redraw
    trainer.add_callback(RedrawCallback(redraw))
    quiet_trainer_callbacks(trainer)  # one progress bar, no printed log dicts unless --verbose
    return trainer, redraw


def last_checkpoint(output_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None


def run_dpo(model, tokenizer, builder: PreferenceBuilder, dcfg: DPOSection, run_dir: Path, seed: int = 0,
            lora_like=None, progress: bool = True) -> dict:
    """Draw, tokenise and train; saves ``adapter/``, ``preference/`` draws + report and ``dpo_log.jsonl``."""
    run_dir = Path(run_dir)
    n_draws = dcfg.epochs if dcfg.redraw_each_epoch else 1
    epoch_pairs, reports = builder.build_epochs(n_draws)
    if dist.is_main():
        _save_draws(run_dir / "preference", epoch_pairs, reports, dcfg.save_pairs)
    mp, mc = dcfg.max_prompt_length, dcfg.max_completion_length
    if mp is None or mc is None:
        p95_prompt, p95_completion = percentile_lengths(tokenizer, epoch_pairs[0], dcfg.length_percentile)
        mp, mc = mp or p95_prompt, mc or p95_completion
    if dist.is_main():
        log.info("DPO: %d prompts, %d pairs per epoch, %d draw(s); max prompt %d / completion %d tokens",
                 reports[0].n_prompts, reports[0].n_pairs, n_draws, mp, mc)
    trainer, _ = build_dpo_trainer(model, tokenizer, epoch_pairs, dcfg, run_dir / "dpo", seed, mp, mc, lora_like,
                                   progress)
    resume = last_checkpoint(run_dir / "dpo") if dcfg.resume else None
    if resume and dist.is_main():
        log.info("resuming DPO from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    info = {"max_prompt_length": mp, "max_completion_length": mc, "draws": n_draws,
            "pairs_per_epoch": reports[0].n_pairs, "prompts": reports[0].n_prompts,
            "missing_prompts": len(reports[0].missing), "global_step": trainer.state.global_step,
            "train_loss": result.training_loss, "train_runtime_s": result.metrics.get("train_runtime"),
            "resumed_from": resume, "world_size": trainer.args.world_size}
    if trainer.is_world_process_zero():
        adapter_dir = run_dir / "adapter"
        trainer.model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        with (run_dir / "dpo_log.jsonl").open("w", encoding="utf-8") as f:
            for row in trainer.state.log_history:
                f.write(json.dumps(row) + "\n")
        (run_dir / "dpo_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


def _save_draws(folder: Path, epoch_pairs, reports: Sequence[PreferenceReport], save_pairs: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps([r.to_json() for r in reports], indent=2), encoding="utf-8")
    if save_pairs:
        for e, pairs in enumerate(epoch_pairs):
            write_jsonl(pairs, folder / f"epoch-{e}.jsonl")
