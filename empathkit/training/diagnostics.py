"""Per-emotion LoRA gradient norms (ECG-LoRA Fig. 6: how much each emotion / emotion group moves the adapter).

Per example of a batch, the LM-loss gradient of the LoRA parameters is taken with ``torch.autograd.grad`` (the
optimiser's ``.grad`` buffers are untouched) and its norm averaged per emotion and per group (gradient group and
polarity from :mod:`empathkit.data.emotions`).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from empathkit.data.emotions import EMOTIONS, gradient_group, polarity

Forward = Callable[[dict, torch.Tensor], object]  # (one example's inputs, its emotion id (1,)) -> outputs with .loss


def lora_parameters(model, exclude: Sequence[str] = ()) -> list[torch.nn.Parameter]:
    """The trainable LoRA matrices (names containing ``lora_``, minus any containing an ``exclude`` part)."""
    return [p for n, p in model.named_parameters()
            if p.requires_grad and "lora_" in n and not any(x in n for x in exclude)]


def emotion_grad_norms(forward: Forward, inputs: dict, emotion_ids: torch.Tensor,
                       params: Sequence[torch.nn.Parameter]) -> dict:
    """``{grad_norm_emotion, grad_count_emotion, grad_norm_group}`` for one batch (see the module docstring)."""
    per_emo: dict[str, list[float]] = {}
    for i in range(inputs["input_ids"].shape[0]):
        one = {k: v[i:i + 1] for k, v in inputs.items() if torch.is_tensor(v)}
        out = forward(one, emotion_ids[i:i + 1])
        grads = torch.autograd.grad(out.loss, list(params), allow_unused=True)
        norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
        eid = int(emotion_ids[i])
        per_emo.setdefault(EMOTIONS[eid] if 0 <= eid < len(EMOTIONS) else "unknown", []).append(norm)
    by_group: dict[str, list[float]] = {}
    for e, v in per_emo.items():
        if e == "unknown":
            continue
        for g in {gradient_group(e), polarity(e)}:
            by_group.setdefault(g, []).extend(v)
    return {"grad_norm_emotion": {e: sum(v) / len(v) for e, v in per_emo.items()},
            "grad_count_emotion": {e: len(v) for e, v in per_emo.items()},
            "grad_norm_group": {g: sum(v) / len(v) for g, v in by_group.items()}}

