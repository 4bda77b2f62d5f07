"""Checks of a (partly) trained ReflectDiffu network that tell *undertrained* from *broken* when its greedy replies
loop ("i i i …"). Used by ``benchmarks/reflectdiffu_cpu.py`` after every model and by the tests.

- :func:`unigram_entropy`: the cross-entropy (nats / token, EOS included) of the responses under the training
  responses' add-one unigram distribution. A decoder whose L_res is not well below it has learned word frequencies
  only, and greedy decoding of such a model repeats the most frequent word.
- :func:`teacher_forced`: on a batch, L_res, the teacher-forced next-token accuracy, how many distinct tokens the
  argmax predicts and the share of the most frequent one, and the pointer-generator's p_gen (mean / min / max).
- :func:`causal_leak`: the largest change of the log-probabilities at positions before ``pos`` when the decoder
  input from ``pos`` on is replaced (0 for a correct causal mask), and the change after ``pos`` (> 0).
- :func:`loop_rate`: the fraction of generated replies with a token repeated three times in a row or a repeated
  trigram.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch

from empathkit.methods.reflectdiffu.vocab import EOS, PAD_ID


def unigram_entropy(train_targets: Sequence[Sequence[str]], eval_targets: Sequence[Sequence[str]] | None = None,
                    vocab_size: int | None = None) -> float:
    """Cross-entropy of ``eval_targets`` (default: the training targets) under the add-one unigram model of
    ``train_targets``; every response ends with EOS."""
    counts = Counter(t for ts in train_targets for t in list(ts) + [EOS])
    total = sum(counts.values())
    v = max(vocab_size or 0, len(counts))
    ev = [t for ts in (eval_targets if eval_targets is not None else train_targets) for t in list(ts) + [EOS]]
    return -sum(math.log((counts.get(t, 0) + 1) / (total + v)) for t in ev) / max(len(ev), 1)


@torch.no_grad()
def teacher_forced(model, batch: dict, seed: int = 0) -> dict[str, float]:
    """Teacher-forced statistics of the response decoder on ``batch`` (eval mode; the model's mode is restored)."""
    was = model.training
    model.eval()
    seen: dict[str, torch.Tensor] = {}
    hook = model.decoder.gen.register_forward_hook(lambda m, i, o: seen.__setitem__("p_gen", torch.sigmoid(o)))
    try:
        torch.manual_seed(seed)
        out = model.losses(batch)  # L_res as trained (EMU: the one-step x0 estimate)
        st = model.state(batch)  # the inference memory (EMU: the reverse walk), as generation sees it
        lp = model.next_logprobs(st, batch["dec_in"])
        p_gen = seen["p_gen"][..., 0]
    finally:
        hook.remove()
        model.train(was)
    tgt = batch["dec_out"]
    m = tgt.ne(PAD_ID)
    pred = lp.argmax(-1)
    counts = Counter(pred[m].tolist())
    top_token, top_n = counts.most_common(1)[0]
    p_gen = p_gen[m]
    return {"L_res": float(out["L_res"]), "accuracy": float((pred == tgt)[m].float().mean()),
            "distinct_argmax": len(counts), "top_argmax_share": top_n / max(int(m.sum()), 1),
            "top_argmax_id": int(top_token), "p_gen_mean": float(p_gen.mean()), "p_gen_min": float(p_gen.min()),
            "p_gen_max": float(p_gen.max()), "positions": int(m.sum())}


@torch.no_grad()
def causal_leak(model, batch: dict, pos: int = 3, fill: int = 7) -> tuple[float, float]:
    """(max |Δ log p| before ``pos``, max |Δ log p| from ``pos`` on) when ``dec_in[:, pos:]`` becomes ``fill``."""
    was = model.training
    model.eval()
    try:
        torch.manual_seed(0)
        st = model.state(batch)
        a = model.next_logprobs(st, batch["dec_in"])
        d2 = batch["dec_in"].clone()
        d2[:, pos:] = fill
        b = model.next_logprobs(st, d2)
    finally:
        model.train(was)
    return float((a[:, :pos] - b[:, :pos]).abs().max()), float((a[:, pos:] - b[:, pos:]).abs().max())


def is_loop(tokens: Sequence[str]) -> bool:
    """A token three times in a row, or a trigram that occurs twice."""
    if any(tokens[i] == tokens[i + 1] == tokens[i + 2] for i in range(len(tokens) - 2)):
        return True
    tri = [tuple(tokens[i:i + 3]) for i in range(len(tokens) - 2)]
    return len(tri) != len(set(tri))


def loop_rate(texts: Sequence[str]) -> float:
    """Fraction of ``texts`` (whitespace-tokenised) that loop (:func:`is_loop`)."""
    return sum(is_loop(t.split()) for t in texts) / max(len(texts), 1)
