"""Attach the per-example gate to every targeted PEFT LoRA layer: ``y = W0 x + G · (B A x) · scaling``.

Hand-written because PEFT has no per-example adapter scaling. A forward hook on each ``lora_A`` module multiplies
its rank-r output by the example's gate; since ``lora_B`` is linear without bias, ``B (g · A x) = g · B A x``
exactly, and the gradients of A and B are scaled by g (paper Eq. 5–6). On the rank-r tensor the hook costs ≈0 %
per training step (on ``lora_B``'s output it would cost 9–13 %: ../shared/design/cpu-facts.md). PEFT applies LoRA
dropout before ``lora_A``, which commutes with the scalar gate.

The gate is per example, so padding side does not matter. When ``generate`` enlarges the batch (beam search,
``num_return_sequences``: rows are ``repeat_interleave``-d), the gate is repeated to match. A gated adapter must not
be merged into the base weights (``merge_and_unload`` would drop the gate): :func:`attach_gate` refuses merged
layers and DoRA / other LoRA variants whose forward does not go through ``lora_A`` → ``lora_B``.
"""

from __future__ import annotations

import torch

from empathkit.errors import ConfigError
from empathkit.methods.ecg_lora.gate import EmotionGate


def _expand(g: torch.Tensor, batch: int) -> torch.Tensor:
    n = g.shape[0]
    if n == batch:
        return g
    if n and batch % n == 0:
        return g.repeat_interleave(batch // n)
    raise RuntimeError(f"ECG-LoRA gate has {n} values but the LoRA input batch has {batch} rows")


def _hook(gate: EmotionGate):
    def hook(module, inputs, output):
        g = gate.current
        if g is None:
            raise RuntimeError("ECG-LoRA layer called without a gate: wrap the forward in `gate.use(gates)` (the "
                               "trainer and the generator do this); for the ungated base model disable the adapter")
        g = _expand(g.to(device=output.device, dtype=output.dtype), output.shape[0])
        return output * g.view(-1, *([1] * (output.dim() - 1)))

    return hook


def attach_gate(peft_model, gate: EmotionGate, adapter_name: str = "default") -> list:
    """Register the gate hooks on every LoRA layer of ``adapter_name``; returns the hook handles. The gate is also
    registered as submodule ``ecg_gate`` of ``peft_model`` (device moves, train/eval mode follow the model)."""
    from peft.tuners.lora import LoraLayer

    handles = []
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer) or adapter_name not in module.lora_A:
            continue
        if getattr(module, "merged", False):
            raise ConfigError(f"{name}: LoRA weights are merged into the base layer; a gated adapter cannot be merged")
        if adapter_name in getattr(module, "lora_variant", {}):
            raise ConfigError(f"{name}: LoRA variants (DoRA, …) are not supported by ECG-LoRA's gate")
        handles.append(module.lora_A[adapter_name].register_forward_hook(_hook(gate)))
    if not handles:
        raise ConfigError("no LoRA layers found to gate (check model.target_modules)")
    peft_model.add_module("ecg_gate", gate)
    return handles
