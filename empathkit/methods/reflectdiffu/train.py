"""``method: reflectdiffu`` training (Sec. 3.4): all parameters jointly on L = delta L_em + zeta L_twice + eta L_res,
Adam (0.9, 0.98, 1e-9) with the Noam schedule, early stopping on the validation loss, checkpoints and resume.

Run directory::

    config.yaml  versions.json  seed          the resolved run config (model + train sections validated)
    log.jsonl                                 one row per log_every steps (losses, lr) and per evaluation
    checkpoints/last.pt  checkpoints/vocab.json   resume state (tensors only; loaded with weights_only=True)
    model/   weights.safetensors  vocab.json  meta.json    the best (lowest validation loss) or last network
    train_summary.json  done

Several processes (``accelerate launch``; on CPUs ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu
--num_processes 2``): every process builds the same seeded network, takes its shard of each global batch
(``batch_size`` is the global batch), and the gradients are averaged over processes (all-reduce) before each step,
so the copies stay identical; rank 0 alone writes the run directory.

Resume (``train.resume=true`` or a run dir with ``checkpoints/last.pt`` given again with resume): model, optimizer,
schedule, step, early-stopping state and the RNG continue; the epoch order is a seeded permutation per epoch, so
the batches after the checkpoint are the ones an uninterrupted run would have seen. Log rows after the checkpoint's
step are dropped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from empathkit.methods.reflectdiffu.config import RDConfig, RDModelConfig, RDTrainConfig
from empathkit.types import Example


def noam_factor(step: int, warmup: int) -> float:
    """Multiplier of the peak lr: step / warmup during warmup, then sqrt(warmup / step) (Vaswani et al.)."""
    s = max(step, 1)
    w = max(warmup, 1)
    return min(s / w, math.sqrt(w / s))


def _examples(rc, split: str) -> list[Example]:
    from empathkit.errors import ResourceMissing
    from empathkit.runconfig import examples_for

    try:
        return list(examples_for(rc, split))
    except ResourceMissing:
        return []


def with_annotations(examples: Sequence[Example], source: str) -> list[Example]:
    """The examples with the turn annotations of an annotated file (``empathkit.annotate.store``) matched by
    dialogue id and turn position; the target turn's annotation (its intent) becomes ``annotations.target``.
    Examples whose dialogue is not in the file stay as they are (counted in the summary)."""
    import dataclasses

    from empathkit.annotate.store import default_annotated_path, read_annotated
    from empathkit.errors import ResourceMissing

    p = Path(source) if ("/" in source or source.endswith(".jsonl")) else default_annotated_path(source)
    if not p.is_file():
        raise ResourceMissing(f"train.annotated: no annotated file at {p} (run `empathkit annotate` first)")
    by_id = {d.id: d for d in read_annotated(p)}
    out = []
    for ex in examples:
        d = by_id.get(ex.dialogue_id)
        ti = int(ex.id.rsplit("#", 1)[1]) if "#" in ex.id else -1
        if d is None or not 0 <= ti < len(d.turns) or d.turns[ti].text != ex.target:
            out.append(ex)
            continue
        first = ti - len(ex.context)
        ctx = tuple(dataclasses.replace(t, annotation=d.turns[first + j].annotation)
                    if d.turns[first + j].text == t.text else t for j, t in enumerate(ex.context))
        ann = dataclasses.replace(ex.annotations, target=d.turns[ti].annotation)
        out.append(dataclasses.replace(ex, context=ctx, annotations=ann))
    return out


def _log(path: Path, row: dict) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        rows = [r for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip()) if r["step"] <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def build_model(mc: RDModelConfig, vocab, era_dim, intent_map, seed: int):
    from empathkit.methods.reflectdiffu.model import ReflectDiffu, refer_mask_from_map
    from empathkit.methods.reflectdiffu.vocab import init_embeddings

    torch.manual_seed(seed)
    init = init_embeddings(vocab, mc.emb_dim, mc.embedding_init, mc.glove_path, seed)
    return ReflectDiffu(mc, len(vocab), era_dim, refer_mask_from_map(intent_map or {}), init)


def to_device(b: dict, device) -> dict:
    return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in b.items()}


def average_gradients(model, world: int) -> None:
    """All-reduce the gradients and divide by the number of processes (data parallelism without DDP's wrapper:
    the model's own ``losses`` method is the forward)."""
    import torch.distributed as dist

    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


@torch.no_grad()
def validation_loss(model, items, vocab, era_dim, tc: RDTrainConfig, seed: int, device="cpu") -> float:
    from empathkit.methods.reflectdiffu.features import collate

    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(seed)  # the same diffusion t / noise and policy draws at every evaluation
    tot, n = 0.0, 0
    for i in range(0, len(items), tc.batch_size):
        chunk = items[i:i + tc.batch_size]
        out = model.losses(to_device(collate(chunk, vocab, era_dim), device), tc.delta, tc.zeta, tc.eta,
                           tc.policy_weight)
        tot += float(out[tc.eval_metric]) * len(chunk)
        n += len(chunk)
    torch.set_rng_state(state)
    model.train()
    return tot / max(n, 1)


def train_reflectdiffu(cfg: dict, run_dir: str | Path, progress: bool = True,
                       train_examples: Sequence[Example] | None = None, valid_examples: Sequence[Example] | None = None,
                       reasons=None, prior=None, intent_map: dict | None = None) -> Path:
    """Train per ``cfg`` (a whole run config) into ``run_dir``; ``reasons`` / ``prior`` / ``intent_map`` replace
    the configured ERA, intent classifier and Intent_refer map (tests)."""
    from tqdm.auto import tqdm

    from empathkit.config import validate
    from empathkit.errors import ConfigError
    from empathkit.methods.reflectdiffu.features import Featurizer, collate
    from empathkit.methods.reflectdiffu.generator import save_model_dir, variant_name
    from empathkit.methods.reflectdiffu.sources import (
        intent_refer_map,
        load_intent_prior,
        load_reason_source,
    )
    from empathkit.methods.reflectdiffu.vocab import SPECIALS, Vocab, build_vocab
    from empathkit.runconfig import resolve
    from empathkit.runs import save_run_meta, set_seed
    from empathkit.training import distributed

    t0 = time.time()
    ws, rank = distributed.world_size(), distributed.rank()
    main = rank == 0
    if ws > 1:
        distributed.barrier()  # joins the process group
    device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    rc = resolve(cfg)
    both = validate(RDConfig, {"model": rc.model, "train": rc.train})
    mc, tc = both.model, both.train
    if tc.max_length:
        mc = mc.model_copy(update={"max_context_tokens": tc.max_length})
    if tc.threads:
        torch.set_num_threads(tc.threads)
    rd = Path(run_dir)
    ck = rd / "checkpoints"
    resume = tc.resume and (ck / "last.pt").is_file()
    set_seed(rc.seed)
    if main:
        save_run_meta(rd, rc.model_dump() | {"model": mc.model_dump(), "train": tc.model_dump()}, rc.seed)

    train_ex = list(train_examples) if train_examples is not None else _examples(rc, "train")
    if valid_examples is not None or train_examples is not None:  # given lists: no valid split read from data
        valid_ex = list(valid_examples or [])
    else:
        valid_ex = _examples(rc, "valid") if tc.early_stopping_patience is not None else []
    if not train_ex:
        raise ConfigError("no training examples (check data.source / data.train_limit)")
    if tc.annotated:
        train_ex, valid_ex = with_annotations(train_ex, tc.annotated), with_annotations(valid_ex, tc.annotated)
    if mc.use_era and reasons is None:
        reasons = load_reason_source(mc.reason_source, mc.era_path)
    if mc.use_intent_twice and prior is None:
        prior = load_intent_prior(mc.intent_prior, mc.intent_classifier)
    if mc.use_intent_twice and intent_map is None:
        intent_map = intent_refer_map(mc.intent_map, mc.intent_refer_n)
    era_dim = reasons.dim if mc.use_era else None

    vocab0 = Vocab(list(SPECIALS), mc.tokenizer) if mc.tokenizer == "words" else build_vocab([], mc.tokenizer)
    feats = Featurizer(vocab0, reasons if mc.use_era else None, prior if mc.use_intent_twice else None,
                       mc.max_context_tokens, mc.max_target_tokens, mc.vader_threshold)
    items = feats.example_items(train_ex, seed=rc.seed)
    v_items = feats.example_items(valid_ex, seed=rc.seed) if valid_ex else []
    if resume:
        vocab = Vocab.load(ck)
    else:
        vocab = (build_vocab([it.tokens + (it.target or []) for it in items], "words", mc.vocab_size, mc.min_freq)
                 if mc.tokenizer == "words" else vocab0)
        if main:
            ck.mkdir(parents=True, exist_ok=True)
            vocab.save(ck)
    model = build_model(mc, vocab, era_dim, intent_map, rc.seed).to(device)
    if ws > 1:
        torch.manual_seed(rc.seed + rank)  # same weights everywhere, different dropout / diffusion draws
    opt = torch.optim.Adam(model.parameters(), lr=tc.lr, betas=tc.adam_betas, eps=tc.adam_eps)
    per_epoch = math.ceil(len(items) / tc.batch_size)
    total = tc.max_steps or max(1, math.ceil(tc.epochs * per_epoch))
    warmup = tc.warmup_steps if tc.warmup_steps is not None else int(tc.warmup_ratio * total)
    lr_at = (lambda s: noam_factor(s + 1, warmup)) if tc.schedule == "noam" else (lambda s: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    step, best, bad, stopped = 0, math.inf, 0, False
    log = rd / "log.jsonl"
    if resume:
        st = torch.load(ck / "last.pt", weights_only=True, map_location=device)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optim"])
        sched.load_state_dict(st["sched"])
        step, best, bad = int(st["step"]), float(st["best"]), int(st["bad"])
        if ws == 1:
            torch.set_rng_state(st["rng"].cpu())
        if main:
            _truncate_log(log, step)
    elif log.exists() and main:
        log.unlink()
    n_params = sum(p.numel() for p in model.parameters())
    model.train()
    bar = tqdm(total=total, initial=step, desc="training", unit="step", disable=not (progress and main),
               dynamic_ncols=True)
    while step < total and not stopped:
        epoch, pos = divmod(step, per_epoch)
        order = torch.randperm(len(items), generator=torch.Generator().manual_seed(rc.seed * 1000 + epoch)).tolist()
        chunk = [items[i] for i in order[pos * tc.batch_size:(pos + 1) * tc.batch_size]][rank::ws] or [items[0]]
        out = model.losses(to_device(collate(chunk, vocab, era_dim), device), tc.delta, tc.zeta, tc.eta,
                           tc.policy_weight)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if ws > 1:
            average_gradients(model, ws)
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.max_grad_norm)
        opt.step()
        sched.step()
        step += 1
        bar.update(1)
        if main and (step % tc.log_every == 0 or step == total):
            row = {"step": step, "lr": sched.get_last_lr()[0]} | {k: round(float(v.detach()), 5) for k, v in out.items()}
            _log(log, row)
            bar.set_postfix(loss=f"{row['loss']:.4g}")
        if v_items and (step % tc.eval_every == 0 or step == total):
            vl = validation_loss(model, v_items, vocab, era_dim, tc, rc.seed, device)
            if main:
                _log(log, {"step": step, "eval_loss": round(vl, 5)})
                bar.set_postfix(loss=f"{float(out['loss'].detach()):.4g}", eval_loss=f"{vl:.4g}")
            if vl < best:
                best, bad = vl, 0
                if main:
                    save_model_dir(rd / "model", model, vocab, era_dim)
            else:
                bad += 1
                stopped = tc.early_stopping_patience is not None and bad >= tc.early_stopping_patience
        if main and (step % tc.save_every == 0 or step == total or stopped):
            torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
                        "step": step, "best": best, "bad": bad, "rng": torch.get_rng_state()}, ck / "last.pt")
    bar.close()
    digests = distributed.all_gather(distributed.weights_digest(model))  # the copies stayed identical
    if not main:
        distributed.barrier()
        return rd
    if not v_items or not (rd / "model" / "weights.safetensors").is_file():
        save_model_dir(rd / "model", model, vocab, era_dim)
    summary = {"steps": step, "total_steps": total, "warmup_steps": warmup, "best_eval_loss": None if best == math.inf
               else best, "stopped_early": stopped, "train_examples": len(items), "valid_examples": len(v_items),
               "intent_labels": sum(it.intent >= 0 for it in items), "vocab": len(vocab), "parameters": n_params,
               "variant": variant_name(mc), "seconds": round(time.time() - t0, 1), "resumed": resume,
               "world_size": ws, "model_sha256": digests, "model_identical": len(set(digests)) == 1}
    (rd / "train_summary.json").write_text(json.dumps(summary, indent=2))
    (rd / "done").write_text("")
    if ws > 1:
        distributed.barrier()
    return rd
