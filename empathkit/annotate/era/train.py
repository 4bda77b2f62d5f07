"""Train ERA on an annotated file (distillation of its annotator, as the paper distils ChatGLM4's tags, Sec. 3.2).

Speaker turns of the file's ``train`` split (a seeded subset of ``train_limit`` turns sized to the CPU) are the
training data (batches of similar length: less padding), ``valid`` turns drive early stopping (token F1 of ``<em>`` every ``eval_every`` steps, ``patience``
evaluations without gain stop the run, once F1 is above 0) and ``test`` turns give the card's held-out scores against the training
annotator: token-level precision / recall / F1 and exact span F1. The encoder and the head (composition, emission,
CRF) have their own learning rates (AdamW, linear warm-up and decay). The best checkpoint is saved with
``card.md``, ``metrics.json`` and ``train_config.json`` (config, seed, library versions).
"""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel, Field

from empathkit.annotate.scores import span_prf, token_prf


class ERATrainConfig(BaseModel):
    model_config = {"extra": "forbid"}

    encoder: str = "minilm-l6"
    max_length: int = Field(128, ge=8)
    train_limit: int | None = Field(3000, ge=1, description="speaker turns used for training (None = all)")
    valid_limit: int = Field(400, ge=1)
    test_limit: int = Field(1000, ge=1)
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-5, gt=0, description="encoder learning rate")
    head_lr: float = Field(1e-3, gt=0, description="composition / emission / CRF learning rate")
    weight_decay: float = 0.01
    warmup: float = Field(0.1, ge=0, lt=1)
    eval_every: int = Field(100, ge=1)
    patience: int = Field(3, ge=1)
    time_budget: float | None = Field(None, gt=0, description="wall-clock minutes for the training loop")
    cpu_budget: float | None = Field(None, gt=0, description="CPU minutes of this process for the training loop "
                                     "(on a shared machine the wall clock says little about the work done)")
    seed: int = 0


def speaker_turns(dialogues) -> list[tuple[list[str], list[str]]]:
    return [(list(t.annotation.tokens), list(t.annotation.reason_tags)) for d in dialogues for t in d.turns
            if t.role == "speaker" and t.annotation is not None and t.annotation.tokens]


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random, pool: int = 50) -> list[list[int]]:
    """One epoch of batches of similar length (hand-written bucketing): shuffle, sort each pool of ``pool`` batches
    by length, cut into batches, shuffle the batches. Padding to the longest turn of a random batch wastes about half
    the encoder's work on ED turns."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    out: list[list[int]] = []
    step = batch_size * pool
    for i in range(0, len(order), step):
        chunk = sorted(order[i:i + step], key=lambda j: lengths[j])
        out += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


def evaluate(era, turns: Sequence[tuple[list[str], list[str]]], batch_size: int = 64) -> dict[str, Any]:
    turns = sorted(turns, key=lambda t: len(t[0]))  # micro scores do not depend on the order; sorted pads less
    pred = era.tag([w for w, _ in turns], batch_size=batch_size)
    gold = [t for _, t in turns]
    return {"token": token_prf(gold, pred), "span": span_prf(gold, pred), "turns": len(turns)}


def previous_summary(metrics_json: str | Path) -> dict[str, Any] | None:
    """The headline numbers of an earlier training run (its ``metrics.json``), kept in the new card for comparison."""
    p = Path(metrics_json)
    if not p.is_file():
        return None
    m = json.loads(p.read_text(encoding="utf-8"))
    return {"sizes": m.get("sizes"), "steps": m.get("steps"), "train_seconds": m.get("train_seconds"),
            "stopped": m.get("stopped"), "best_valid_token_f1": m.get("best_valid_token_f1"),
            "test_token": m["test"]["token"], "test_span": m["test"]["span"]}


def train_era(annotated: str | Path, out: str | Path, config: ERATrainConfig | dict | None = None,
              progress: bool = True, model=None, previous: str | Path | None = None) -> dict[str, Any]:
    """Train and save ERA; returns the metrics written to ``metrics.json``. ``model``: start from this ERA
    (tests pass a tiny random one) instead of ``ERA.new(config.encoder)``. ``previous``: the ``metrics.json`` of an
    earlier run to compare with in the card (default: the one already in ``out``, if any)."""
    import os

    import torch
    from transformers import get_linear_schedule_with_warmup

    from empathkit.annotate.era.model import ERA
    from empathkit.annotate.store import read_annotated, read_meta
    from empathkit.errors import DataError
    from empathkit.runs import library_versions, set_seed

    cfg = config if isinstance(config, ERATrainConfig) else ERATrainConfig(**(config or {}))
    before = previous_summary(previous or Path(out) / "metrics.json")
    set_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    splits = {}
    for sp, lim in (("train", cfg.train_limit), ("valid", cfg.valid_limit), ("test", cfg.test_limit)):
        turns = speaker_turns(read_annotated(annotated, split=sp))
        if not turns:
            raise DataError(f"no annotated speaker turns in split {sp!r}", file=str(annotated), field="split")
        splits[sp] = rng.sample(turns, lim) if lim and lim < len(turns) else turns
    teacher = read_meta(annotated).get("annotator", "")
    era = model or ERA.new(cfg.encoder, cfg.max_length, cfg.seed)
    head = [p for n, p in era.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW([{"params": era.encoder.parameters(), "lr": cfg.lr},
                             {"params": head, "lr": cfg.head_lr}], weight_decay=cfg.weight_decay)
    train = splits["train"]
    steps = max(1, int(cfg.epochs * len(train) / cfg.batch_size))
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup * steps), steps)
    best, best_state, bad_evals, history = -1.0, None, 0, []
    load_start = os.getloadavg()
    t0, c0, step, stopped = time.perf_counter(), time.process_time(), 0, "schedule done"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc="train ERA", unit="step")
    batches: list[list[int]] = []
    lengths = [len(w) for w, _ in train]
    while step < steps:
        if not batches:  # a new epoch
            batches = length_batches(lengths, cfg.batch_size, rng)
        idx = batches.pop()
        era.train()
        loss = era.loss([train[i][0] for i in idx], [train[i][1] for i in idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(era.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", best_f1=f"{max(best, 0):.3f}")
        if step % cfg.eval_every == 0 or step == steps:
            f1 = evaluate(era, splits["valid"])["token"]["f1"]
            history.append({"step": step, "loss": float(loss.item()), "valid_token_f1": f1,
                            "seconds": round(time.perf_counter() - t0, 1),
                            "cpu_seconds": round(time.process_time() - c0, 1)})
            if f1 > best:
                best, best_state, bad_evals = f1, copy.deepcopy(era.state_dict()), 0
            elif best > 0:  # F1 0 = all <noem> so far (the CRF's usual start): not a plateau, nothing learned yet
                bad_evals += 1
                if bad_evals >= cfg.patience:
                    stopped = f"early stop: {cfg.patience} evaluations without gain"
                    break
        if cfg.time_budget and time.perf_counter() - t0 > cfg.time_budget * 60:
            stopped = f"time budget {cfg.time_budget} min"
            break
        if cfg.cpu_budget and time.process_time() - c0 > cfg.cpu_budget * 60:
            stopped = f"CPU budget {cfg.cpu_budget} min"
            break
    if bar is not None:
        bar.close()
    train_seconds, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    if best_state is not None:  # the checkpoint with the best valid token F1
        era.load_state_dict(best_state)
    t1 = time.perf_counter()
    test = evaluate(era, splits["test"])
    metrics = {"teacher": teacher, "annotated": str(annotated), "steps": step, "stopped": stopped,
               "train_seconds": round(train_seconds, 1),
               "train_cpu_seconds": round(train_cpu, 1), "test_seconds": round(time.perf_counter() - t1, 1),
               "best_valid_token_f1": best, "test": test, "history": history,
               "sizes": {k: len(v) for k, v in splits.items()}, "torch_threads": torch.get_num_threads(),
               "load_average": {"start": list(load_start), "end": list(os.getloadavg())}, "previous": before}
    era.config.extra = {"teacher": teacher, "test_token_f1": test["token"]["f1"], "test_span_f1": test["span"]["f1"]}
    p = era.save(out)
    (p / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (p / "train_config.json").write_text(json.dumps({"config": cfg.model_dump(), "versions": library_versions()},
                                                    indent=2), encoding="utf-8")
    (p / "card.md").write_text(card(metrics, cfg), encoding="utf-8")
    return metrics


def _machine(m: dict[str, Any]) -> str:
    la = m.get("load_average")
    if not la:
        return ""
    return (f"Machine: {m.get('torch_threads', '?')} torch thread(s), load average {la['start'][0]:.1f} at the start "
            f"and {la['end'][0]:.1f} at the end of training (shared CPU: times vary with the load).\n")


def _curve(m: dict[str, Any]) -> str:
    if not m.get("history"):
        return ""
    rows = "".join(f"| {h['step']} | {h.get('seconds', '')} | {h.get('cpu_seconds', '')} | {h['valid_token_f1']:.3f} |\n"
                   for h in m["history"])
    return "\n## Validation curve\n| step | wall s | CPU s | valid token F1 |\n|---:|---:|---:|---:|\n" + rows


def _previous(m: dict[str, Any]) -> str:
    p = m.get("previous")
    if not p:
        return ""
    t, s = p["test_token"], p["test_span"]
    return (f"\n## Previous run (for comparison)\n{p['sizes']['train']} train turns, {p['steps']} steps, "
            f"{p['train_seconds']:.0f} s ({p['stopped']}): held-out token F1 {t['f1']:.3f} (P {t['precision']:.3f}, "
            f"R {t['recall']:.3f}), span F1 {s['f1']:.3f} on {p['sizes']['test']} test turns; best valid token F1 "
            f"{p['best_valid_token_f1']:.3f}.\n")


def card(m: dict[str, Any], cfg: ERATrainConfig) -> str:
    t, s = m["test"]["token"], m["test"]["span"]
    return f"""# ERA (Emotion Reason Annotator) — model card

- **What**: ReflectDiffu's ERA (App. C.1): {cfg.encoder} token encoder + attention-based semantic composition
  (Eq. 14–15) + CRF over first-sub-word positions (pytorch-crf). Tags `<em>` / `<noem>` per word.
- **Trained on**: the tags of `{m['teacher']}` (distillation of that annotator, not of human labels) on
  {m['sizes']['train']} speaker turns of ED train (seeded subset, seed {cfg.seed}); early stopping on
  {m['sizes']['valid']} valid turns ({m['stopped']}, {m['steps']} steps, {m['train_seconds']:.0f} s wall /
  {m.get('train_cpu_seconds', m['train_seconds']):.0f} s CPU).
- **Settings**: encoder lr {cfg.lr}, head lr {cfg.head_lr}, batch {cfg.batch_size}, epochs {cfg.epochs},
  max {cfg.max_length} word pieces, AdamW + linear warm-up {cfg.warmup}.

## Held-out scores against the training annotator ({m['sizes']['test']} ED test speaker turns)
| level | precision | recall | F1 |
|---|---:|---:|---:|
| token (`<em>`) | {t['precision']:.3f} | {t['recall']:.3f} | {t['f1']:.3f} |
| span (exact) | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |

Token accuracy {t['accuracy']:.3f} over {int(t['tokens'])} tokens. Best valid token F1 {m['best_valid_token_f1']:.3f}.
{_machine(m)}{_curve(m)}{_previous(m)}
## Limits
- The scores measure how well ERA reproduces its teacher, not agreement with human judgements of emotion reasons.
- The teacher's errors (lexicon: context nouns with strong emotion scores, missed paraphrases) are learned too.
- English only; words beyond {cfg.max_length} word pieces are not tagged (`<noem>`).
"""
