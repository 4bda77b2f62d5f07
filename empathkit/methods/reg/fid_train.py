"""REG for encoder–decoder backbones (the paper's T5 variant, Sec. 3.2.2 / 3.2.4–3.2.5): Fusion-in-Decoder G1, G2 and
joint training, on transformers' ``Trainer`` through the shared pieces (``training.driver.training_arguments``,
``training.trainer.CausalLMTrainer``'s optimiser groups / extra-state hooks, ``JsonlCallback``, resume).

- **Rows** are (passages, gold response), built by :class:`~empathkit.methods.reg.generator.REGFiDGenerator` itself
  (``passages(source(conversation))``, the builder generation uses): G1 = one passage ``{query tags}\\n{source}``
  (Eq. 2, no exemplar); G2 = one passage per exemplar, ``{query tags}\\nExemplar {tags}: {response}\\n{source}``
  (Eq. 6). The loss is ``models.fid.fid_forward``'s mean token NLL of the gold response (EOS included).
- **Which exemplars / what joint means**: as the causal stage 3 (``reg/joint.py``): top-K of the current retriever,
  own conversation excluded, RCA on training rows; ``joint`` adds ``α·L_R^aug`` with the query encoder as its own
  AdamW group (α cancels under Adam with disjoint parameters, docs/methods/reg.md).
- **Fine-tuning**: ``finetune: full`` (the paper fine-tunes T5-small, lr 1e-4) or ``lora`` (PEFT, task
  ``SEQ_2_SEQ_LM``; :func:`seq2seq_lora_targets` maps the causal default q/k/v/o_proj to T5's q/k/v/o). G2 continues
  G1's adapter (as the causal stage 3 does); generation loads base + adapter and merges it.
- **Multi-process** (``accelerate launch``): the Trainer wraps a :class:`~empathkit.models.fid.FiDModel`, whose
  ``forward`` is the whole FiD pass, so DDP synchronises the encoder's gradients too; stage 2 runs on rank 0 while
  the others wait; ``joint`` shards L_R^aug and averages the query encoder's gradients as the causal stage does
  (``reg/joint.py``: ``joint_distiller``, ``JointParts``, ``QueryEncoderSync``).
- The encoder input carries no gold emotion (``use_emotion`` off: at inference only the context is known).

Run directory: ``model/`` (G1 weights + tokenizer), ``g2/model/`` (G2; ``g2/model/query_encoder`` after joint) —
``adapter/`` and ``g2/adapter/`` instead under LoRA,
each stage a driver-style run directory (``config.yaml``, ``log.jsonl``, ``checkpoints/``, ``train_summary.json``,
``done``).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from empathkit.errors import ConfigError
from empathkit.methods.reg.generator import fid_generator, seq2seq_config  # noqa: F401 (re-exported)
from empathkit.methods.reg.joint import REGJointTrainer
from empathkit.training.trainer import CausalLMTrainer
from empathkit.types import Controls, Example

from empathkit.methods.reg.fid_weights import (ADAPTER_DIR, MODEL_DIR, is_fid_stage,  # noqa: F401 (re-exported)
                                               load_fid_weights, stage_weights)


def seq2seq_lora_targets(model, targets) -> list[str] | str:
    """LoRA target modules for an encoder–decoder ``model``: ``targets`` as given when the model has modules of
    those names, else each name without its ``_proj`` suffix (the causal default q/k/v/o_proj → T5's q/k/v/o).
    Hand-written: PEFT's own default target table is keyed by model type and is not used when names are given."""
    if isinstance(targets, str):
        return targets
    leaves = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    if any(t in leaves for t in targets):
        return list(targets)
    stripped = [t.removesuffix("_proj") for t in targets]
    if any(t in leaves for t in stripped):
        return [t for t in stripped if t in leaves]
    raise ConfigError(f"model.target_modules={list(targets)!r}: no such modules in this encoder–decoder backbone")


def _trainable_model(mc, init_from: Path | None):
    """The model a FiD stage trains: full — the G1 weights (or the base backbone); LoRA — G1's adapter continued,
    or a fresh adapter on the base backbone."""
    from empathkit.models.backbones import load_backbone

    if init_from is not None:
        return load_fid_weights(init_from, mc, trainable=True)
    model, tok = load_backbone(mc.backbone, mc.dtype)
    if mc.finetune == "full":
        return model, tok
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=mc.lora_r, lora_alpha=mc.lora_alpha, lora_dropout=mc.lora_dropout, bias="none",
                     target_modules=seq2seq_lora_targets(model, mc.target_modules), task_type="SEQ_2_SEQ_LM")
    return get_peft_model(model, cfg), tok


def fid_rows(gen, examples: Sequence[Example], exemplars: dict[str, tuple] | None, max_source_tokens: int | None):
    """``[{"passages": [...], "target": str}]`` of the examples (``exemplars``: per example id; None = G1)."""
    out = []
    for ex in examples:
        c = dataclasses.replace(Controls(), exemplars=tuple((exemplars or {}).get(ex.id, ())),
                                attributes=dict(ex.annotations.attributes) or None)
        src = gen.source(gen.example_conversation(ex), c, max_source_tokens)
        out.append({"passages": gen.passages(src, c), "target": ex.target})
    return out


def _collate(features: list[dict]) -> dict:
    return {"passages": [f["passages"] for f in features], "targets": [f["target"] for f in features]}


class FiDTrainer(CausalLMTrainer):
    """``CausalLMTrainer`` with the FiD loss: rows of passages and gold texts (no token ids in the batch). The
    Trainer's model is a :class:`~empathkit.models.fid.FiDModel` (so a DDP wrapper sees the whole FiD pass in
    one ``forward``); checkpoints, resume and the best model are the inner model's own (``save_pretrained`` /
    the Trainer's PEFT or ``PreTrainedModel`` loading), not the wrapper's state dict."""

    def __init__(self, *args, fid_tokenizer=None, max_passage_tokens: int | None = None,
                 max_target_tokens: int = 128, **kwargs):
        self.fid_tok, self.max_passage_tokens, self.max_target_tokens = fid_tokenizer, max_passage_tokens, \
            max_target_tokens
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        from empathkit.models.fid import fid_inputs

        batch = fid_inputs(self.fid_tok, inputs["passages"], inputs["targets"], self.max_passage_tokens,
                           self.max_target_tokens, device=self.args.device)
        out = model(**batch)
        if model.training:
            self.tokens_seen += int((batch["labels"] != -100).sum())
        return (out.loss, out) if return_outputs else out.loss

    def inner_model(self):
        """The encoder–decoder model (or its PEFT wrapper) inside the :class:`FiDModel`."""
        return self.accelerator.unwrap_model(self.model).model

    def _save(self, output_dir=None, state_dict=None):
        import os

        from transformers.trainer import TRAINING_ARGS_NAME

        out = output_dir or self.args.output_dir
        os.makedirs(out, exist_ok=True)
        self.inner_model().save_pretrained(out)
        torch.save(self.args, os.path.join(out, TRAINING_ARGS_NAME))
        self.save_extra(out)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """In place (the optimiser holds these parameters): a PEFT adapter through PEFT's ``load_adapter``, full
        weights through ``from_pretrained`` (which re-ties T5's shared embedding) copied in strictly. DDP only:
        DeepSpeed / FSDP checkpoints of the wrapper are not handled."""
        from peft import PeftModel

        inner = self.inner_model() if model is None else model
        if isinstance(inner, PeftModel):
            inner.load_adapter(resume_from_checkpoint, inner.active_adapter, is_trainable=True)
        else:
            saved = type(inner).from_pretrained(resume_from_checkpoint, dtype=inner.dtype)
            inner.load_state_dict(saved.state_dict())
        self.load_extra(resume_from_checkpoint)

    def _load_best_model(self):
        if self.state.best_model_checkpoint:
            self._load_from_checkpoint(self.state.best_model_checkpoint)


class FiDJointTrainer(REGJointTrainer, FiDTrainer):
    """Eq. 7 over the FiD loss (``REGJointTrainer.compute_loss`` → ``FiDTrainer.compute_loss``)."""


def train_fid_stage(cfg: dict, out_dir: Path, mc, tc, rows_train, rows_valid, *, init_from: Path | None,
                    joint=None, progress: bool = True, extra: dict | None = None) -> Path:
    """One FiD stage (G1 or G2) into ``out_dir``: fine-tuning (full or LoRA) from ``init_from``'s weights (G2 from
    G1) or the base backbone, the shared TrainingArguments, early stopping on validation L_G2, resume."""
    from transformers import EarlyStoppingCallback

    from empathkit.progress import quiet_trainer_callbacks
    from empathkit.runs import save_run_meta, set_seed
    from empathkit.training import distributed as dist
    from empathkit.training.driver import resolve_resume, training_arguments
    from empathkit.training.logs import JsonlCallback, JsonlLog

    from empathkit.models.fid import FiDModel
    from empathkit.runconfig import resolve

    rc = resolve(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dist.is_main():
        save_run_meta(out_dir, rc.model_dump(), rc.seed)
    set_seed(rc.seed)
    model, tok = _trainable_model(mc, init_from)
    model.train()
    tok.padding_side = "right"
    has_eval = bool(rows_valid)
    args = training_arguments(tc, out_dir / "checkpoints", rc.seed, has_eval, progress)
    args.label_names, args.prediction_loss_only = ["targets"], True
    sink = JsonlLog(out_dir / "log.jsonl")
    callbacks: list = [JsonlCallback(sink)]
    if has_eval and tc.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=tc.early_stopping_patience))
    kw = dict(model=FiDModel(model), args=args, train_dataset=rows_train, eval_dataset=rows_valid or None,
              data_collator=_collate, callbacks=callbacks, sink=sink, train_cfg=tc, fid_tokenizer=tok,
              max_target_tokens=128)
    trainer = FiDJointTrainer(joint=joint, **kw) if joint is not None else FiDTrainer(**kw)
    quiet_trainer_callbacks(trainer)
    resume = resolve_resume(tc, out_dir)
    t0 = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    tok.padding_side = "left"
    digests = dist.all_gather(dist.weights_digest(trainer.inner_model()))  # every rank: DDP kept them equal
    if trainer.is_world_process_zero():
        wdir = out_dir / (ADAPTER_DIR if mc.finetune == "lora" else MODEL_DIR)
        trainer.inner_model().save_pretrained(wdir)
        tok.save_pretrained(wdir)
        trainer.save_extra(wdir)
        if joint is not None:
            from empathkit.methods.reg.joint import digest_summary

            extra = {**(extra or {}), **digest_summary(joint)}
        summary = {"world_size": dist.world_size(), "model_sha256": digests,
                   "model_identical": len(set(digests)) == 1, "finetune": mc.finetune, "fusion": "fid",
                   "global_steps": trainer.state.global_step,
                   "train_examples": len(rows_train), "valid_examples": len(rows_valid or []),
                   "wall_seconds": time.time() - t0, "train_loss": result.metrics.get("train_loss"),
                   "best_eval_loss": trainer.state.best_metric, "resumed_from": resume, **(extra or {})}
        (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        (out_dir / "done").write_text("ok\n")
    dist.barrier()
    return out_dir


def load_fid_g1(run_dir: Path, mc, tagger=None):
    """G1 of a FiD run as a plain :class:`REGFiDGenerator` (stage 2 hands it candidates)."""
    from empathkit.methods.reg.method import attribute_fn_for

    model, tok = load_fid_weights(run_dir, mc)
    fn = attribute_fn_for(tagger) if tagger is not None and mc.needs_query_attributes else None
    return fid_generator(model, tok, mc, fn, source_dir=run_dir, info={"stage": "g1"})


def train_reg_fid(cfg: dict, run_dir: Path, index, train, valid, mc, tc, progress: bool = True) -> dict[str, Any]:
    """Stages g1 / retriever / g2 | joint for an encoder–decoder backbone; returns seconds per stage."""
    from empathkit.methods.reg.distill import CandidateAugmenter
    from empathkit.methods.reg.joint import (JointParts, check_joint_queries, current_query_encoder,
                                             joint_distiller, prompt_exemplars)
    from empathkit.methods.reg.retriever import candidate_pools, train_retriever
    from empathkit.models.backbones import load_tokenizer
    from empathkit.training import distributed as dist

    times: dict[str, Any] = {}
    budget = 256  # encoder tokens of a source (oldest turns dropped first), as generation's default prompt budget
    shape = fid_generator(None, load_tokenizer(mc.backbone), mc)
    tagger = index.tagger if mc.needs_query_attributes else None
    if "g1" in tc.stages:
        t0 = time.time()
        train_fid_stage(cfg, run_dir, mc, tc, fid_rows(shape, train, None, budget),
                        fid_rows(shape, valid, None, budget) if valid else None, init_from=None, progress=progress)
        times["g1"] = round(time.time() - t0, 2)
    elif stage_weights(run_dir) is None:
        raise ConfigError(f"train.stages={tc.stages} skips g1 but {run_dir} has no trained G1 (model/ or adapter/)")
    if "retriever" in tc.stages:
        t0 = time.time()
        # rank 0 alone (one writer of the decode cache and query_encoder/), as the causal stage 2 (reg/train.py)
        dist.main_first(lambda: train_retriever(index, load_fid_g1(run_dir, mc, tagger), train, tc.retriever_config(),
                                                run_dir / "retriever", progress, mode=mc.mode) and None)
        times["retriever"] = round(time.time() - t0, 2)
    stage3 = next((s for s in tc.stages if s in ("g2", "joint")), None)
    if stage3:
        from empathkit.methods.reg.retriever import stage_index

        index = stage_index(run_dir, index)  # the refreshed index when stage 2 re-indexed
        t0 = time.time()
        gc, rcfg = tc.g2_config(), tc.retriever_config()
        qenc = current_query_encoder(run_dir, index)
        qenc.eval()
        aug = CandidateAugmenter(index.exemplars, rcfg.distill.k, seed=rcfg.seed) if rcfg.distill.k > 0 else None
        ex_train, replaced, total = prompt_exemplars(index, train, mc, qenc, aug)
        ex_valid = prompt_exemplars(index, valid, mc, qenc, None)[0] if valid else {}
        parts, info = None, {}
        if stage3 == "joint":  # as the causal joint stage (reg/joint.py), multi-process included
            queries = list(train)[: rcfg.queries] if rcfg.queries else list(train)
            queries, pools, rmode = candidate_pools(index, queries, qenc, rcfg.pool, mc.mode)
            check_joint_queries(queries)
            distiller, cands, flags, decoded = joint_distiller(
                index, lambda: load_fid_g1(run_dir, mc, tagger), queries, pools, rcfg, run_dir / "retriever", rmode,
                progress)
            info = {"retriever_decoded": decoded, "retriever_candidates_replaced": sum(map(sum, flags))}
            parts = JointParts(qenc, distiller, cands, gc.alpha, gc.retriever_lr or rcfg.lr,
                               gc.retriever_batch_size or rcfg.batch_size, rcfg.seed, rank=dist.rank(),
                               world=dist.world_size())
        g2cfg = {**cfg, "train": {**cfg.get("train", {}), **gc.train_overrides(), "resume": tc.resume}}
        from empathkit.config import validate

        g2tc = validate(type(tc), g2cfg["train"], "train")
        train_fid_stage(g2cfg, run_dir / "g2", mc, g2tc, fid_rows(shape, train, ex_train, budget),
                        fid_rows(shape, valid, ex_valid, budget) if valid else None,
                        init_from=run_dir if gc.init == "g1" else None, joint=parts, progress=progress,
                        extra={"reg_stage": stage3, "init": gc.init, "prompt_exemplars_replaced": replaced,
                               "prompt_exemplars": total, **info})
        times[stage3] = round(time.time() - t0, 2)
    return times
