"""Fine-tune MiniLM + a linear head (for kinds where frozen embeddings are not accurate enough, e.g. ``emotion``).

A short plain PyTorch loop (the model is a sentence-transformers Transformer+Pooling stack with a ``nn.Linear``
on top, which neither ``Trainer`` nor ``SentenceTransformerTrainer`` provides as a classifier): AdamW, linear
warm-up/decay (transformers' scheduler), dynamic per-batch padding (batches are drawn from length-sorted buckets),
``max_seq_length`` truncation. Checkpoints every ``checkpoint_every`` steps into ``<out>/checkpoint`` (weights as
safetensors + a JSON step counter); rerunning resumes from there (AdamW moments restart).
The saved encoder drops the ``Normalize`` module of all-MiniLM-L6-v2 so the head sees unnormalised mean-pooled
embeddings.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from empathkit.classifiers.core import ClassifierConfig, TextClassifier, embedding_dim
from empathkit.classifiers.ensemble import EnsembleClassifier
from empathkit.classifiers.scoring import evaluate

log = logging.getLogger(__name__)


def _batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Length-bucketed random batches: shuffle, sort chunks of 50 batches by length, shuffle the batches."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * 50
    batches = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s: s + chunk], key=lambda i: lengths[i])
        batches += [part[k: k + batch_size] for k in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _advance(sched, n: int) -> None:
    """Move a fresh LR schedule ``n`` steps on (resume / re-planned schedule); torch warns that no optimizer step
    came first, which is intended here."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
        for _ in range(n):
            sched.step()


def train_finetuned(config: ClassifierConfig, splits: dict, out_dir: str | Path, seed: int = 0, epochs: float = 1.0,
                    max_seq_length: int = 64, batch_size: int = 32, lr: float = 5e-5, train_limit: int | None = None,
                    checkpoint_every: int = 200, encoder_name: str = "minilm-l6",
                    time_budget_s: float | None = None, head_lr: float | None = 1e-3, eval_every: int = 0,
                    eval_limit: int = 1000, init_from: str | Path | None = None) -> dict[str, Any]:
    """``init_from``: a fine-tuned classifier folder (``encoder/`` + ``head.safetensors``) to continue training from
    (e.g. a further half epoch at a lower rate); otherwise start from ``encoder_name`` with a fresh head."""
    import torch
    from safetensors.torch import load_file, save_file
    from sentence_transformers import SentenceTransformer
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    from empathkit.models.backbones import encoder_path

    out = Path(out_dir)
    ckpt = out.with_name(out.name.replace(".partial", "") + ".checkpoint")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    start_from = str(Path(init_from) / "encoder") if init_from else encoder_path(encoder_name)
    full = SentenceTransformer(start_from, device="cpu", trust_remote_code=False)
    model = SentenceTransformer(modules=[full[0], full[1]], device="cpu")  # Transformer + mean Pooling, no Normalize
    model.max_seq_length = max_seq_length
    dim = embedding_dim(model)
    head = torch.nn.Linear(dim, len(config.labels))
    if init_from:  # the head is trained already: it continues at the encoder's rate
        head_lr = lr
        from safetensors.numpy import load_file as load_np

        w = load_np(str(Path(init_from) / "head.safetensors"))
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(w["weight"]))
            head.bias.copy_(torch.from_numpy(w["bias"]))
    multi = config.multi_label

    xs, ys = splits["train"]
    if train_limit is not None and train_limit < len(xs):
        keep = sorted(rng.sample(range(len(xs)), train_limit))
        xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
    prep = TextClassifier(config, np.zeros((len(config.labels), 1)), np.zeros(len(config.labels)))._prep
    xs = [prep(x) for x in xs]
    if multi:
        target = torch.zeros(len(ys), len(config.labels))
        for i, labs in enumerate(ys):
            for lab in labs:
                target[i, config.labels.index(lab)] = 1.0
    else:
        target = torch.tensor([config.labels.index(y) for y in ys])
    lengths = [len(x) for x in xs]
    steps_per_epoch = (len(xs) + batch_size - 1) // batch_size
    total = max(1, int(steps_per_epoch * epochs))
    params = list(model.parameters()) + list(head.parameters())
    # the freshly initialised head learns with its own (larger) rate: at the encoder's rate it lags for hundreds
    # of steps; the schedule scales both groups alike
    opt = torch.optim.AdamW([{"params": list(model.parameters()), "lr": lr},
                             {"params": list(head.parameters()), "lr": head_lr or lr}], weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, int(0.06 * total), total)

    start = 0
    curve: list[dict] = []
    if (ckpt / "state.json").is_file():
        state = json.loads((ckpt / "state.json").read_text())
        model.load_state_dict(load_file(str(ckpt / "encoder.safetensors")))
        head.load_state_dict(load_file(str(ckpt / "head.safetensors")))
        start = int(state["step"])
        curve = list(state.get("valid_curve", []))  # the validation points before the interruption
        _advance(sched, start)
        log.info("resuming fine-tuning from step %d/%d (%s)", start, total, ckpt)

    order: list[list[int]] = []
    while len(order) < total:
        order += _batches(lengths, batch_size, rng)
    order = order[:total]
    loss_fn = torch.nn.BCEWithLogitsLoss() if multi else torch.nn.CrossEntropyLoss()
    vx, vy = splits.get("valid") or ([], [])
    vsub = rng.sample(range(len(vx)), min(eval_limit, len(vx))) if eval_every and vx else []

    def valid_accuracy() -> float:
        model.eval()
        with torch.no_grad():
            emb = model.encode([prep(vx[i]) for i in vsub], batch_size=64, convert_to_tensor=True)
            pred = head(emb).argmax(-1).tolist()
        model.train()
        return float(np.mean([config.labels[p] == vy[i] for p, i in zip(pred, vsub)]))

    model.train()
    t0 = time.time()
    losses = []
    planned = total
    step = start
    bar = tqdm(total=total, desc=f"fine-tune {config.kind}", initial=start)
    while step < total:
        if time_budget_s and step == start + 20:
            # fit the run into the wall-clock budget: measure the step time, shorten the schedule if needed
            per_step = (time.time() - t0) / 20
            affordable = start + 20 + int((time_budget_s - (time.time() - t0)) / per_step)
            if affordable < total:
                total = max(step + 1, affordable)
                sched = get_linear_schedule_with_warmup(opt, int(0.06 * total), total)
                _advance(sched, step)
                bar.total = total
                log.info("time budget %.0fs: %d of %d planned steps (%.2fs/step)", time_budget_s, total, planned, per_step)
        idx = order[step]
        feats = model.tokenize([xs[i] for i in idx])
        emb = model(feats)["sentence_embedding"]
        loss = loss_fn(head(emb), target[idx])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        losses.append(loss.item())
        step += 1
        bar.update(1)
        if vsub and not multi and step % eval_every == 0:
            curve.append({"step": step, "examples_seen": step * batch_size, "train_loss": float(np.mean(losses[-50:])),
                          "valid_accuracy": valid_accuracy(), "seconds": round(time.time() - t0, 1)})
            bar.set_postfix(valid_acc=f"{curve[-1]['valid_accuracy']:.3f}")
            out.mkdir(parents=True, exist_ok=True)
            (out / "valid_curve.jsonl").write_text("".join(json.dumps(c) + "\n" for c in curve), encoding="utf-8")
        if checkpoint_every and step % checkpoint_every == 0 and step < total:  # after the validation point
            ckpt.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(ckpt / "encoder.safetensors"))
            save_file(head.state_dict(), str(ckpt / "head.safetensors"))
            (ckpt / "state.json").write_text(json.dumps({"step": step, "total": total, "valid_curve": curve}))
    bar.close()
    train_time = time.time() - t0
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out / "encoder"), safe_serialization=True)
    cfg = ClassifierConfig(**{**config.__dict__, "encoder": "encoder", "max_seq_length": max_seq_length})
    clf = TextClassifier(cfg, head.weight.detach().numpy(), head.bias.detach().numpy(), path=out)
    clf.save(out)
    clf = TextClassifier.load(out)
    test = evaluate(clf, *splits["test"])
    valid = evaluate(clf, *splits["valid"]) if splits.get("valid") and splits["valid"][0] else {}
    if ckpt.exists():
        shutil.rmtree(ckpt)
    return {"method": "finetune-minilm+linear", "test": test, "valid": valid,
            "hyperparameters": {"epochs": epochs, "max_seq_length": max_seq_length, "batch_size": batch_size,
                                "lr": lr, "head_lr": head_lr, "init_from": str(init_from) if init_from else None,
                                "train_examples": len(xs), "steps": total, "planned_steps": planned,
                                "examples_seen": total * batch_size, "time_budget_s": time_budget_s},
            "finetune_seconds": round(train_time, 1), "valid_curve": curve,
            "final_train_loss": float(np.mean(losses[-50:])) if losses else None}


def train_finetuned_ensemble(config: ClassifierConfig, splits: dict, out_dir: str | Path, members: int, seed: int = 0,
                             **opts) -> dict[str, Any]:
    """``members`` fine-tuned classifiers with seeds ``seed … seed+members-1``, combined by the mean of their
    probabilities (:class:`EnsembleClassifier`). Each member is trained in ``<final>.members/`` next to the output
    and kept there once finished, so an interrupted run resumes with the next member (and the unfinished member
    from its own checkpoint); the finished ensemble moves into ``out_dir``."""
    out = Path(out_dir)
    work = out.with_name(out.name.replace(".partial", "") + ".members")
    work.mkdir(parents=True, exist_ok=True)
    runs, names = [], []
    for i in range(members):
        name = f"member-{i}"
        done = work / name
        if (done / "result.json").is_file():
            log.info("ensemble member %d/%d already trained (%s)", i + 1, members, done)
            runs.append(json.loads((done / "result.json").read_text(encoding="utf-8")))
        else:
            part = work / f"{name}.partial"
            if part.exists():
                shutil.rmtree(part)
            res = train_finetuned(config, splits, part, seed=seed + i, **opts)
            res["seed"] = seed + i
            (part / "result.json").write_text(json.dumps(res, indent=2, default=str), encoding="utf-8")
            part.rename(done)
            runs.append(res)
        names.append(name)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.move(str(work / name), str(out / name))
    shutil.rmtree(work)
    ens = EnsembleClassifier([TextClassifier.load(out / n) for n in names])
    ens.save(out, names)
    test = evaluate(ens, *splits["test"])
    valid = evaluate(ens, *splits["valid"]) if splits.get("valid") and splits["valid"][0] else {}
    return {"method": f"ensemble of {members} fine-tuned minilm+linear (mean probability)", "test": test, "valid": valid,
            "members": [{"seed": r["seed"], "test": r["test"], "valid": r["valid"],
                         "finetune_seconds": r["finetune_seconds"]} for r in runs],
            "hyperparameters": {**runs[0]["hyperparameters"], "members": members},
            "finetune_seconds": round(sum(r["finetune_seconds"] for r in runs), 1),
            "valid_curve": runs[0]["valid_curve"]}
