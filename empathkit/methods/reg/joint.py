"""REG stage 3 for causal LMs (Sec. 3.2.4–3.2.5, Eq. 6–7): G2 trained with the current retriever's top-K exemplars
in its prompt, alone (stage ``g2``: L_G2) or jointly with the retriever (stage ``joint``:
``L = α·L_R^aug + (1 − α)·L_G2``, α = 0.2), through the shared driver (``training.driver.run_training``).

- **G2 starts from G1** (``train.g2.init: g1``): the fresh LoRA of the driver is loaded with G1's adapter weights
  (``prepare`` hook), so G2 continues G1's adapter. ``init: base`` = ``REG_scratch`` (G2 from the base model).
- **Exemplars in the prompt**: before training, the current retriever (the stage-2 query encoder when it exists,
  else the index's encoder; the model's ``mode`` / score settings) retrieves ``model.k`` exemplars per training and
  validation example, never from the example's own conversation. Each *training* example's exemplars go through
  Retrieval Candidate Augmentation (``CandidateAugmenter``, probability ``train.retriever.distill.k``, seeded by
  ``train.retriever.seed``; ``k = 0``: w/o RCA); validation rows are never augmented. The prompt is
  :meth:`REGCausalGenerator.system_prompt` — the builder generation uses. Exemplars are drawn once for the stage
  (prompts are tokenised up front by the driver), i.e. not refreshed as the query encoder moves.
- **L_R^aug** (stage ``joint``): the stage-2 loss (``retriever.Distiller``) on ``retriever_batch_size`` training
  queries per G2 micro-batch (per optimiser step when ``grad_accum`` = 1; a seeded cycle over the queries,
  independent of G2's batch: L_R does not depend on G2's rows), over candidate pools of the current retriever with
  one Eq. 5 draw, the missing G1 decodes decoded before training into the stage-2 cache (``retriever/decodes``).
- **What "joint" means here** (docs/methods/reg.md): L_R touches only the query encoder and L_G2 only G2's LoRA
  (the exemplars enter G2 as text, so no gradient crosses). Eq. 7 is applied literally — one loss, one backward, one
  AdamW with the query encoder as its own parameter group (``retriever_lr``) — but under Adam the per-parameter
  update is invariant to a constant scale of that parameter's gradient, so α and 1 − α cancel (up to Adam's ε)
  and the stage equals simultaneous steps of G2 and the retriever; the weighting knobs that matter are the two
  learning rates. Gradient clipping (``max_grad_norm``) covers G2's parameters only.
- **Multi-process** (``accelerate launch``): G2 is DDP-wrapped by the Trainer as in every driver run. The query
  encoder is not: every rank holds a full copy (same weights at the start), the shared seeded cycle draws
  ``retriever_batch_size × processes`` queries per micro-batch and rank r takes every N-th from r (disjoint shards,
  per rank the single-process batch size, as G2's sampler), and before each optimiser step
  :class:`QueryEncoderSync` averages the query encoder's accumulated gradients over the ranks
  (``distributed.average_gradients``, one all-reduce) — then the one AdamW (both parameter groups) makes the same
  update everywhere. Not DDP for it: the Trainer's single optimizer and ``no_sync`` only know G2's wrapper, the
  L_R forward would have to go through a second wrapper, it would reduce at every accumulation micro-batch and
  need ``find_unused_parameters``; averaging the accumulated gradient once per step is what DDP would compute.
  The weights' SHA-256 per rank is compared at the end (``train_summary.json``: ``query_encoder_identical``).
  The missing G1 decodes are decoded by rank 0 alone while the others wait (``distributed.main_first``), then every
  rank reads the cache; only rank 0 writes files (the driver's checkpoints / final save call ``save_extra``).
- The Trainer zeroes only G2's gradients after a step (``model.zero_grad()``): :class:`QueryEncoderSync` zeroes
  the query encoder's too (without it they summed over all earlier steps).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import random
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pydantic import BaseModel, Field
from transformers import TrainerCallback

from empathkit.errors import ConfigError
from empathkit.methods.reg.distill import ALPHA, CandidateAugmenter
from empathkit.training.distributed import weights_digest  # noqa: F401 (re-exported)
from empathkit.training.trainer import CausalLMTrainer
from empathkit.types import Controls, Example

G2_DIR = "g2"
QUERY_ENCODER = "query_encoder"


class G2TrainConfig(BaseModel):
    """``train.g2`` — stage 3 options; unset training fields fall back to the ``train`` section (G1's)."""

    model_config = {"extra": "forbid"}

    init: Literal["g1", "base"] = Field("g1", description="g1: continue G1's adapter; base: REG_scratch")
    alpha: float = Field(ALPHA, ge=0, le=1, description="Eq. 7 weight of L_R^aug (paper: 0.2)")
    max_steps: int | None = Field(None, description="G2 optimiser steps (default: train.max_steps)")
    lr: float | None = Field(None, gt=0, description="G2 learning rate (default: train.lr)")
    batch_size: int | None = Field(None, ge=1)
    max_length: int = Field(384, ge=16, description="G2's rows: the prompt holds K exemplars")
    eval_every: int | None = Field(None, ge=1)
    retriever_lr: float | None = Field(None, gt=0, description="joint: query-encoder lr (default train.retriever.lr)")
    retriever_batch_size: int | None = Field(None, ge=1, description="joint: L_R queries per step "
                                                                     "(default train.retriever.batch_size)")

    def train_overrides(self) -> dict[str, Any]:
        keys = ("max_steps", "lr", "batch_size", "max_length", "eval_every")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


# ====================================================================================================== exemplars
def prompt_exemplars(index, examples: Sequence[Example], mc, qenc, augmenter: CandidateAugmenter | None):
    """``{example id: exemplars}``: the top ``mc.k`` of the current retriever, own conversation excluded, each
    row augmented (Eq. 5) when ``augmenter`` is given. Returns ``(exemplars by id, replaced count, total)``."""
    sc = mc.retrieval.score
    contexts = [[t.text for t in ex.context] for ex in examples]
    qa = [dict(ex.annotations.attributes) or {} for ex in examples] if mc.mode == "reg" else None
    rows = index.search(contexts, k=mc.k, mode=mc.mode, exclude_dialogue_ids=[ex.dialogue_id for ex in examples],
                        query_attributes=qa, weight=sc.weight, attribute_weights=sc.attribute_weights, pool=sc.pool,
                        query_encoder=qenc)
    out, replaced, total = {}, 0, 0
    for ex, row in zip(examples, rows):
        if augmenter is not None:
            row, flags = augmenter(row, ex.dialogue_id)
            replaced += sum(flags)
        total += len(row)
        out[ex.id] = tuple(row)
    return out, replaced, total


def g2_prompt(mc, exemplars: dict[str, tuple], tokenizer=None):
    """``example -> system prompt`` of G2's rows: :meth:`REGCausalGenerator.system_prompt` with the example's
    attribute tags and its exemplars (the prompt generation builds; ``tokenizer`` cuts the exemplars as generation
    does, default the backbone's)."""
    from empathkit.methods.reg.generator import REGCausalGenerator
    from empathkit.models.backbones import load_tokenizer

    tok = tokenizer if tokenizer is not None else load_tokenizer(mc.backbone)
    gen = REGCausalGenerator(None, tok, mc.prompt_config(), mc.prompt_builder())

    def prompt(ex: Example) -> str | None:
        c = dataclasses.replace(Controls.from_example(ex), exemplars=exemplars.get(ex.id, ()),
                                attributes=dict(ex.annotations.attributes) or None)
        return gen.system_prompt(c)
    return prompt


# ====================================================================================================== trainer
class JointParts:
    """What the joint trainer adds: the query encoder, the distiller and its candidates, α, the query cycle
    (``rank`` / ``world``: this process's shard of each draw, see the module docstring)."""

    def __init__(self, qenc, distiller, cands, alpha: float, lr: float, batch_size: int, seed: int, *,
                 rank: int = 0, world: int = 1):
        self.qenc, self.distiller, self.cands, self.alpha = qenc, distiller, cands, alpha
        self.lr, self.batch_size, self.rank, self.world = lr, batch_size, rank, world
        self._rng = random.Random(f"reg-joint-order-{seed}")
        self._order: list[int] = []
        self.digests: list[str] = []  # per rank, at the end of training (QueryEncoderSync.on_train_end)

    def next_ids(self) -> list[int]:
        """This rank's queries for one micro-batch: ``batch_size × world`` from the seeded cycle (the same on every
        rank), every ``world``-th from ``rank`` (one process: the whole draw)."""
        out = []
        while len(out) < self.batch_size * self.world:
            if not self._order:
                self._order = list(range(len(self.distiller.queries)))
                self._rng.shuffle(self._order)
            out.append(self._order.pop())
            if len(out) >= len(self.distiller.queries):
                break
        return out[self.rank::self.world]

    def params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.qenc.parameters() if p.requires_grad]


class QueryEncoderSync(TrainerCallback):
    """Per optimiser step, what the Trainer does for G2 but not for the query encoder (not part of ``model``):
    average its gradients over the processes before the step (no-op in one process) and zero them after it. At the
    end of training, every rank's weight digest goes to ``joint.digests``."""

    def __init__(self, joint: JointParts):
        self.joint = joint

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        from empathkit.training import distributed as dist

        dist.average_gradients(self.joint.params())

    def on_optimizer_step(self, args, state, control, **kwargs):
        for p in self.joint.params():
            p.grad = None

    def on_train_end(self, args, state, control, **kwargs):
        from empathkit.training import distributed as dist

        self.joint.digests = dist.all_gather(weights_digest(self.joint.qenc.model))


class REGJointTrainer(CausalLMTrainer):
    """Eq. 7: ``(1 − α)·L_G2 + α·L_R^aug`` in training; evaluation reports L_G2 alone (early stopping on G2)."""

    def __init__(self, *args, joint: JointParts, **kwargs):
        self.joint = joint
        super().__init__(*args, **kwargs)
        self.add_callback(QueryEncoderSync(joint))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        res = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not model.training:
            return res
        loss_g, outputs = res if return_outputs else (res, None)
        j = self.joint
        j.qenc.train()
        loss_r = j.distiller.loss(j.qenc, j.next_ids(), j.cands)[0]
        loss = (1.0 - j.alpha) * loss_g + j.alpha * loss_r
        if self.sink is not None and self.is_world_process_zero() and self.state.global_step % self.tcfg.log_every == 0:
            self.sink.write({"kind": "joint", "step": self.state.global_step, "loss_g2": float(loss_g.detach()),
                             "loss_r": float(loss_r.detach()), "alpha": j.alpha})
        return (loss, outputs) if return_outputs else loss

    def param_groups(self, model) -> list[dict]:
        return super().param_groups(model) + [
            {"params": self.joint.params(), "lr": self.joint.lr,
             "weight_decay": 0.0, "name": "retriever"}]

    def save_extra(self, output_dir) -> None:
        if self.is_world_process_zero():
            self.joint.qenc.save(Path(output_dir) / QUERY_ENCODER)

    def load_extra(self, checkpoint_dir) -> None:
        d = Path(checkpoint_dir) / QUERY_ENCODER
        if d.is_dir():  # in place: the optimiser holds these parameter objects
            from empathkit.methods.reg.retriever import QueryEncoder

            self.joint.qenc.model.load_state_dict(QueryEncoder.load(d).model.state_dict())


def _g1_loader(run_dir: Path):
    """``prepare`` hook: G2's fresh LoRA gets G1's adapter weights (G2 starts from G1)."""
    def prepare(model, tok, mc, tc):
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        f = run_dir / "adapter" / "adapter_model.safetensors"
        if not f.is_file():
            raise ConfigError(f"train.g2.init=g1 needs G1's adapter at {f} (run stage g1 first)")
        res = set_peft_model_state_dict(model, load_file(str(f)))
        if getattr(res, "unexpected_keys", None):
            raise ConfigError(f"G1's adapter does not match G2's LoRA config: {res.unexpected_keys[:3]}")
        return model, {}
    return prepare


def current_query_encoder(run_dir: Path, index):
    """The stage-2 query encoder (``retriever/query_encoder``) when it exists, else a fresh trainable copy of the
    index's encoder."""
    from empathkit.methods.reg.retriever import ENCODER_DIR, QueryEncoder

    d = run_dir / "retriever" / ENCODER_DIR
    return QueryEncoder.load(d) if d.is_dir() else QueryEncoder.from_encoder(index.config["encoder"])


def digest_summary(parts: JointParts) -> dict[str, Any]:
    return {"query_encoder_sha256": parts.digests, "query_encoder_identical": len(set(parts.digests)) == 1}


def check_joint_queries(queries) -> None:
    """Every process needs at least one L_R^aug query of its own."""
    from empathkit.training import distributed as dist

    if len(queries) < dist.world_size():
        raise ConfigError(f"REG stage 'joint' under {dist.world_size()} processes needs at least that many "
                          f"retriever queries with candidates (got {len(queries)}; train.retriever.queries)")


class _DecodedBy:
    """Stands for G1 on the ranks that only read the decode cache: the name that keys it, and no model."""

    def __init__(self, name: str):
        self.source_dir = name


def joint_distiller(index, g1_loader, queries, pools, rcfg, out_dir: Path, mode: str, progress: bool = True):
    """The ``Distiller`` of L_R^aug with every (query, candidate) pair of its one Eq. 5 draw decoded:
    ``(distiller, candidates, replaced flags, pairs decoded now)``. The missing decodes go into the stage-2 cache;
    with several processes rank 0 alone loads G1 and decodes while the others wait (``distributed.main_first``),
    then they open the same cache (read only) and draw the same candidates (same seed), checked against rank 0's.
    G1 is dropped afterwards (``distiller.decode = None``)."""
    from empathkit.methods.reg.retriever import Distiller
    from empathkit.training import distributed as dist

    def cands_digest(cands) -> str:
        return hashlib.sha256(repr(cands).encode()).hexdigest()

    mine: dict[str, Any] = {}

    def decode_on_main() -> dict[str, Any]:
        g1 = g1_loader()
        d = Distiller(index, g1, queries, pools, rcfg, out_dir, mode)
        cands, flags = d.augment()
        mine.update(distiller=d, cands=cands, flags=flags)
        return {"g1": d.cache.key["g1"], "decoded": d.fill(cands, progress and dist.is_main(), "G1 decodes (joint)"),
                "cands": cands_digest(cands)}

    res = dist.main_first(decode_on_main)
    if mine:
        d, cands, flags = mine["distiller"], mine["cands"], mine["flags"]
    else:
        d = Distiller(index, _DecodedBy(res["g1"]), queries, pools, rcfg, out_dir, mode)
        cands, flags = d.augment()
        missing = d.cache.missing([(q.id, e) for q, row in zip(d.queries, cands) for e in row])
        if cands_digest(cands) != res["cands"] or missing:
            raise RuntimeError(f"rank {dist.rank()}: the joint stage's candidates differ from rank 0's "
                               f"({len(missing)} pairs not in {d.cache.path})")
    d.decode = None  # G1 is not needed any more (every pair is cached)
    return d, cands, flags, res["decoded"]


def train_g2(cfg: dict, run_dir: Path, index, train: list[Example], valid, mc, tc, *, joint: bool,
             progress: bool = True, g1_loader=None) -> Path:
    """Stage ``g2`` / ``joint`` into ``run_dir/g2`` (a driver run directory: adapter/, log.jsonl, done …; the
    joint query encoder in ``g2/adapter/query_encoder``). ``g1_loader()`` → G1 as a plain generator (for the
    missing decodes of L_R^aug)."""
    from empathkit.methods.reg.retriever import candidate_pools
    from empathkit.training import distributed as dist
    from empathkit.training.driver import run_training

    gc: G2TrainConfig = tc.g2_config()
    rcfg = tc.retriever_config()
    torch.manual_seed(rcfg.seed)
    qenc = current_query_encoder(run_dir, index)
    qenc.eval()
    aug = CandidateAugmenter(index.exemplars, rcfg.distill.k, seed=rcfg.seed) if rcfg.distill.k > 0 else None
    ex_train, replaced, total = prompt_exemplars(index, train, mc, qenc, aug)
    ex_valid = prompt_exemplars(index, valid, mc, qenc, None)[0] if valid else {}
    kwargs: dict[str, Any] = {}
    parts = None
    info = {"init": gc.init, "alpha": gc.alpha if joint else None, "prompt_exemplars_replaced": replaced,
            "prompt_exemplars": total}
    if joint:
        queries = list(train)[: rcfg.queries] if rcfg.queries else list(train)
        queries, pools, rmode = candidate_pools(index, queries, qenc, rcfg.pool, mc.mode)
        check_joint_queries(queries)
        distiller, cands, flags, decoded = joint_distiller(index, g1_loader, queries, pools, rcfg,
                                                           run_dir / "retriever", rmode, progress)
        info["retriever_decoded"] = decoded
        info["retriever_candidates_replaced"] = sum(map(sum, flags))
        parts = JointParts(qenc, distiller, cands, gc.alpha, gc.retriever_lr or rcfg.lr,
                           gc.retriever_batch_size or rcfg.batch_size, rcfg.seed, rank=dist.rank(),
                           world=dist.world_size())
        kwargs["trainer_cls"] = lambda *a, **kw: REGJointTrainer(*a, joint=parts, **kw)
    g2cfg = copy.deepcopy(cfg)
    g2cfg["train"] = {**g2cfg.get("train", {}), **gc.train_overrides(), "resume": tc.resume}
    out = run_dir / G2_DIR
    run_training(g2cfg, out, train, valid, progress, model_cfg_cls=type(mc), train_cfg_cls=type(tc),
                 example_prompt=g2_prompt(mc, {**ex_train, **ex_valid}),
                 prepare=_g1_loader(run_dir) if gc.init == "g1" else None,
                 extra_summary=lambda trainer, m, t: {"reg_stage": "joint" if joint else "g2", **info,
                                                      **(digest_summary(parts) if joint else {})}, **kwargs)
    return out

