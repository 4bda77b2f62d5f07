"""ReflectDiffu (Yuan et al., "ReflectDiffu: Reflect between Emotion-intent Contagion and Mimicry for Empathetic
Response Generation via a RL-Diffusion Framework") — a model of its own (docs/methods/reflectdiffu.md):

``config`` (options) · ``vocab`` (tokens, embeddings) · ``sources`` (ERA reason states, p_intent, VADER, Intent_refer)
· ``features`` (examples → batches) · ``encoder`` (emotion-contagion encoder, Eq. 1-3) · ``experts`` (C-Experts,
NT-Xent, Eq. 4) · ``diffusion`` (EMU DDPMs, Eq. 6-7) · ``intent`` (Exploring / policy + reward / Correcting) ·
``decoder`` (transformer decoder + pointer-generator) · ``model`` (assembly, ablation switches, Eq. 12) ·
``decoding`` (greedy / sampling / beam) · ``train`` · ``generator`` (the Generator, run-dir model folder).
"""

from __future__ import annotations

from empathkit.methods.base import MethodSpec
from empathkit.methods.reflectdiffu.config import RDConfig, RDModelConfig, RDTrainConfig


def _load(config=None, run_dir=None):
    from empathkit.methods.reflectdiffu.generator import load

    return load(config, run_dir)


def _train(cfg: dict, run_dir, progress: bool = True):
    from empathkit.methods.reflectdiffu.train import train_reflectdiffu

    return train_reflectdiffu(cfg, run_dir, progress=progress)


SPEC = MethodSpec("reflectdiffu", RDConfig, load=_load, train=_train,
                  description="ReflectDiffu: emotion-contagion encoder + C-Experts + intent twice (DDPM EMU + "
                              "importance-weighted policy) + pointer-generator decoder, trained end to end")

__all__ = ["SPEC", "RDConfig", "RDModelConfig", "RDTrainConfig"]
