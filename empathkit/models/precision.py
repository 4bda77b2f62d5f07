"""Inference precision of a loaded generator (``generation.precision``): ``float32``, ``bfloat16`` or ``auto``
(bfloat16 where the CPU / GPU runs it natively — AVX512_BF16 / AMX or a bf16 CUDA device, detected by
:func:`empathkit.models.backbones.native_bf16`, never assumed — else float32).

Measured on a 2-core Xeon with AMX (``benchmarks/results/generation.md``): bfloat16 weights run batched generation
~2–2.6× faster than float32 at a reference perplexity within 0.2 %, but change most greedy texts (≈ 1 in 3 stays
identical) and do not speed up batch-1 decoding (per-token overhead, not weight bytes, bounds it there). Hence the
defaults: ``float32`` for ``generate`` / evaluation (numbers that do not depend on the CPU's instruction set),
``auto`` for interactive ``chat`` / ``serve``. The weights are converted once, at load (into a copy: a cached backbone stays as it is); the generator's
``score`` then runs at the same precision (perplexity is reported per precision).

Weight-only int8 (torchao 0.18 ``Int8WeightOnlyConfig``) was measured too and is not offered: on this CPU it
decoded 0.6× as fast as float32 (no fused CPU kernel), so it buys nothing here.
"""

from __future__ import annotations

from typing import Literal

Precision = Literal["float32", "bfloat16", "auto"]
PRECISIONS = ("float32", "bfloat16", "auto")


def resolve_precision(precision: str) -> str:
    """``auto`` → ``bfloat16`` where native, else ``float32``; the others unchanged (unknown names: ValueError)."""
    from empathkit.models.backbones import resolve_dtype

    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {list(PRECISIONS)}")
    return resolve_dtype(precision)


def apply_precision(generator, precision: str) -> str:
    """Convert ``generator.model`` to ``precision`` in place (once, at load) and record it in ``generator.info``.
    Returns the resolved name. A generator without a torch ``model`` only accepts float32; a generator class with
    ``precisions`` (e.g. ReflectDiffu: float32) refuses the others, except that ``auto`` falls back to its first."""
    import torch

    name = resolve_precision(precision)
    supported = getattr(generator, "precisions", None)  # a generator class may run at fewer precisions
    if supported is not None and name not in supported:
        from empathkit.errors import ConfigError

        if precision != "auto":
            raise ConfigError(f"generation.precision={precision}: {type(generator).__name__} runs at "
                              f"{' / '.join(supported)} only")
        name = supported[0]
    model = getattr(generator, "model", None)
    if not isinstance(model, torch.nn.Module):
        if name != "float32":
            from empathkit.errors import ConfigError

            raise ConfigError(f"generation.precision={precision}: {type(generator).__name__} has no torch model to "
                              "convert (use float32)")
        return name
    dtype = getattr(torch, name)
    if next(model.parameters()).dtype != dtype:
        import copy

        # a copy: the loaded model may be shared (``cached_backbone``) with generators that keep their precision
        generator.model = copy.deepcopy(model).to(dtype)
    info = getattr(generator, "info", None)
    if isinstance(info, dict):
        info["precision"] = name
    return name
