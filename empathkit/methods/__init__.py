"""Method registry. A new method = one sub-package with config + code exposing ``SPEC``, plus one line below.

Each entry is a :class:`~empathkit.methods.base.MethodSpec`. The method packages import their heavy dependencies
(peft, trl, the trainers) inside functions, so importing this registry stays fast.
"""

from __future__ import annotations

from empathkit.methods.base import Generator, MethodSpec
from empathkit.registry import Registry

METHODS: Registry[MethodSpec] = Registry("method")


def _register_builtin() -> None:
    from empathkit.methods import ecg_lora, empo, prompt, reflectdiffu, reg, seq2seq, sft

    METHODS.register("prompt", prompt.SPEC)
    METHODS.register("sft", sft.SPEC)
    METHODS.register("ecg-lora", ecg_lora.SPEC)
    METHODS.register("empo", empo.SPEC)
    METHODS.register("seq2seq", seq2seq.SPEC)
    METHODS.register("reg", reg.SPEC)
    METHODS.register("reflectdiffu", reflectdiffu.SPEC)


_register_builtin()

__all__ = ["METHODS", "Generator", "MethodSpec"]
