"""ECG-LoRA (``method: ecg-lora``): emotion-conditioned gated LoRA, ``y = W0 x + G_emo · B A x`` with
``G_emo = σ(W_g · Emb(emotion) + b_g)`` per example, trained with ``L_LM + W1·L_con + W2·L_reg``. See
docs/methods/ecg-lora.md.

Python API::

    from empathkit.methods.ecg_lora import train_ecg, load
    run_dir = train_ecg(cfg, Path("runs/ecg"))                 # cfg: full run config dict, method "ecg-lora"
    gen = load({"gate": 0.5}, run_dir)                          # inference-time overrides (constant gate here)
    gen.generate(examples, gates=[0.0, 1.0, None])              # per-example forced gates (None = learned)
    gen.chat([[{"role": "user", "content": "…"}]], emotions=["sad"])   # unknown emotion → predictor / mean gate
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import BaseModel, Field

from empathkit.data.emotions import EMOTION_TO_ID
from empathkit.methods.base import MethodSpec
from empathkit.methods.ecg_lora.config import ECGModelConfig, ECGTrainConfig
from empathkit.methods.ecg_lora.gate import EmotionGate
from empathkit.methods.ecg_lora.predictor import EmotionPredictor, classifier_predictor
from empathkit.methods.sft import SFTGenerator
from empathkit.models.generation import GenerationSettings
from empathkit.types import Example, Prediction

log = logging.getLogger(__name__)

INFERENCE_KEYS = ("gate", "gate_per_emotion", "emotion_source", "unknown_emotion")


class ECGConfig(BaseModel):
    model_config = {"extra": "forbid"}

    model: ECGModelConfig = Field(default_factory=ECGModelConfig)
    train: ECGTrainConfig = Field(default_factory=ECGTrainConfig)


class ECGGenerator(SFTGenerator):
    """Generates with the learned gate of each example's emotion, unless forced (constant / per emotion / per call)."""

    name = "ecg-lora"

    def __init__(self, model, tokenizer, config: ECGModelConfig, gate: EmotionGate,
                 predictor: EmotionPredictor | None = None, info: dict[str, Any] | None = None):
        super().__init__(model, tokenizer, config, info)
        self.gate = gate
        self._predictor = predictor
        self._predictor_tried = predictor is not None
        self.last_gates: list[float] = []  # the gates used for the last batch (inspection / tests)

    # -- emotion prediction ----------------------------------------------------------------------------------------
    @property
    def predictor(self) -> EmotionPredictor | None:
        if not self._predictor_tried:
            self._predictor_tried = True
            self._predictor = classifier_predictor()
            if self._predictor is None:
                log.warning("no emotion predictor (train one: `empathkit classifiers train emotion`): examples "
                            "without a known emotion use the mean gate over the 32 emotions")
        return self._predictor

    def predict_emotions(self, contexts: Sequence[Sequence[str]]) -> list[str | None]:
        if self.config.unknown_emotion == "mean" or self.predictor is None:
            return [None] * len(contexts)
        return [e if e in EMOTION_TO_ID else None for e in self.predictor(contexts)]

    # -- gate resolution ---------------------------------------------------------------------------------------------
    def gate_values(self, emotions: Sequence[str | None], gates: Sequence[float | None] | None = None) -> list[float]:
        learned = self.gate.values()
        mean = sum(learned.values()) / len(learned)
        out = []
        for i, emo in enumerate(emotions):
            forced = gates[i] if gates is not None else None
            if forced is not None:
                out.append(float(forced))
            elif self.config.gate is not None:
                out.append(self.config.gate)
            elif emo is not None and emo in self.config.gate_per_emotion:
                out.append(float(self.config.gate_per_emotion[emo]))
            elif emo is not None and emo in learned:
                out.append(learned[emo])
            else:
                out.append(mean)
        return out

    def batch_context(self, emotions, gates=None):
        vals = self.gate_values(emotions, gates)
        self.last_gates = vals
        dev = next(self.model.parameters()).device
        return self.gate.use(torch.tensor(vals, dtype=torch.float32, device=dev))

    # -- generation / chat -------------------------------------------------------------------------------------------
    def generate(self, examples: Sequence[Example], settings: GenerationSettings | None = None,
                 progress: bool = True, gates: Sequence[float | None] | None = None) -> list[Prediction]:
        if self.config.emotion_source == "gold":
            return super().generate(examples, settings, progress, gates)
        preds = self.predict_emotions([[t.text for t in ex.context] for ex in examples])
        swapped = [dataclasses.replace(ex, emotion=p or "") for ex, p in zip(examples, preds)]
        out = super().generate(swapped, settings, progress, gates)
        for p, ex, pe in zip(out, examples, preds):
            p.emotion = ex.emotion
            p.extra["predicted_emotion"] = pe
        return out

    def chat(self, conversations, settings=None, emotions=None, gates=None, progress=False) -> list[str]:
        emos = list(emotions) if emotions is not None else [None] * len(conversations)
        missing = [i for i, e in enumerate(emos) if e is None and (gates is None or gates[i] is None)]
        if missing:
            ctx = [[m["content"] for m in conversations[i] if m["role"] in ("user", "assistant")] for i in missing]
            for i, e in zip(missing, self.predict_emotions(ctx)):
                emos[i] = e
        return super().chat(conversations, settings, emos, gates, progress)


def load(config: dict | None = None, run_dir: str | Path | None = None,
         predictor: EmotionPredictor | None = None) -> ECGGenerator:
    """A generator for a trained ECG-LoRA run. ``config`` may carry inference-time keys (``gate``,
    ``gate_per_emotion``, ``emotion_source``, ``unknown_emotion``) that override the run's own."""
    from empathkit.config import validate
    from empathkit.errors import ConfigError
    from empathkit.methods.ecg_lora.layers import attach_gate
    from empathkit.methods.sft.trainer import load_trained

    if run_dir is None:
        raise ConfigError("method 'ecg-lora' needs a trained run: `empathkit generate --run RUN_DIR` "
                          "(train one with `empathkit train --method ecg-lora -c ecg-lora/cpu-small`)")
    model, tok, mc = load_trained(run_dir, ECGModelConfig)
    over = {k: v for k, v in (config or {}).items() if k in INFERENCE_KEYS}
    if over:
        mc = validate(ECGModelConfig, mc.model_dump() | over, "model")
    gate = EmotionGate.from_dir(Path(run_dir) / "adapter")
    gate.to(next(model.parameters()).device)
    attach_gate(model, gate)
    model.eval()
    return ECGGenerator(model, tok, mc, gate, predictor,
                        info={"run_dir": str(run_dir), "gate_override": mc.gate,
                              "gate_per_emotion": dict(mc.gate_per_emotion), "emotion_source": mc.emotion_source})


def train_ecg(cfg: dict, run_dir: Path, train_examples=None, valid_examples=None, progress: bool = True) -> Path:
    from empathkit.methods.ecg_lora.trainer import train_ecg as _t

    return _t(cfg, run_dir, train_examples, valid_examples, progress)


def _train(cfg: dict, run_dir: Path, progress: bool = True) -> Path:
    return train_ecg(cfg, run_dir, progress=progress)


SPEC = MethodSpec("ecg-lora", ECGConfig, load=load, train=_train,
                  description="emotion-conditioned gated LoRA (ECG-LoRA): per-example gate on every LoRA update")

__all__ = ["SPEC", "ECGConfig", "ECGModelConfig", "ECGTrainConfig", "ECGGenerator", "EmotionGate", "load",
           "train_ecg"]
