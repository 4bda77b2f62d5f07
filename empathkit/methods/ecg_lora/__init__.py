"""ECG-LoRA (``method: ecg-lora``): emotion-conditioned gated LoRA, ``y = W0 x + G_emo · B A x`` with
``G_emo = σ(W_g · Emb(emotion) + b_g)`` per example, trained with ``L_LM + W1·L_con + W2·L_reg``. See
docs/methods/ecg-lora.md.

Python API::

    from empathkit.methods.ecg_lora import train_ecg, load
    run_dir = train_ecg(cfg, Path("runs/ecg"))                 # cfg: full run config dict, method "ecg-lora"
    gen = load({"gate": 0.5}, run_dir)                          # inference-time overrides (constant gate here)
    gen.generate(examples, controls=[Controls(gate=0.0), Controls(gate=1.0), None])   # forced gates (None = learned)
    gen.chat([[{"role": "user", "content": "…"}]], controls=[Controls(emotion="sad")])  # no emotion → predictor
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Sequence

import torch

from empathkit.data.emotions import EMOTION_TO_ID
from empathkit.methods.base import MethodSpec
from empathkit.methods.ecg_lora.config import ECGConfig, ECGModelConfig, ECGTrainConfig
from empathkit.methods.ecg_lora.gate import EmotionGate
from empathkit.methods.ecg_lora.predictor import EmotionPredictor, classifier_predictor
from empathkit.methods.causal import RunGenerator

log = logging.getLogger(__name__)

INFERENCE_KEYS = ("gate", "gate_per_emotion", "emotion_source", "unknown_emotion")


class ECGGenerator(RunGenerator):
    """Generates with the learned gate of each example's emotion, unless forced (constant / per emotion / per call).

    Controls: ``emotion`` (gold in evaluation, detected in chat; with ``emotion_source: predicted`` or when missing
    the emotion predictor fills it in) and ``gate`` (a forced gate for that row)."""

    def __init__(self, model, tokenizer, config: ECGModelConfig, gate: EmotionGate,
                 predictor: EmotionPredictor | None = None, info: dict[str, Any] | None = None, source_dir=None):
        super().__init__(model, tokenizer, config, "ecg-lora", info, source_dir=source_dir)
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

    # -- hooks of CausalLMGenerator ------------------------------------------------------------------------------------
    def example_controls(self, examples, controls=None):
        ctrls = super().example_controls(examples, controls)
        if self.config.emotion_source == "gold":
            return ctrls
        # predicted emotions replace the gold label, unless the caller gave one (the gold label stays in the output)
        given = controls or [None] * len(examples)
        todo = [i for i, c in enumerate(given) if c is None or c.emotion is None]
        preds = self.predict_emotions([[t.text for t in examples[i].context] for i in todo])
        for i, p in zip(todo, preds):
            ctrls[i] = dataclasses.replace(ctrls[i], emotion=p, emotion_source="predicted")
        return ctrls

    def resolve_controls(self, conversations, controls):
        missing = [i for i, c in enumerate(controls) if c.emotion is None and c.gate is None
                   and c.emotion_source != "predicted"]
        if missing:
            ctx = [[m["content"] for m in conversations[i] if m["role"] in ("user", "assistant")] for i in missing]
            for i, e in zip(missing, self.predict_emotions(ctx)):
                controls[i] = dataclasses.replace(controls[i], emotion=e, emotion_source="predicted")
        return controls

    def conditioning(self, controls):
        vals = self.gate_values([c.emotion for c in controls], [c.gate for c in controls])
        self.last_gates = vals
        dev = next(self.model.parameters()).device
        return self.gate.use(torch.tensor(vals, dtype=torch.float32, device=dev))

    def reply_info(self, controls):
        info = {"gate": self.gate_values([controls.emotion], [controls.gate])[0]}
        if controls.emotion_source == "predicted":
            info["predicted_emotion"] = controls.emotion
        return info


def load(config: dict | None = None, run_dir: str | Path | None = None,
         predictor: EmotionPredictor | None = None) -> ECGGenerator:
    """A generator for a trained ECG-LoRA run. ``config`` may carry inference-time keys (``gate``,
    ``gate_per_emotion``, ``emotion_source``, ``unknown_emotion``) that override the run's own."""
    from empathkit.config import validate
    from empathkit.errors import ConfigError
    from empathkit.methods.ecg_lora.layers import attach_gate
    from empathkit.training.backbone import load_trained

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
                              "gate_per_emotion": dict(mc.gate_per_emotion), "emotion_source": mc.emotion_source},
                        source_dir=run_dir)


def train_ecg(cfg: dict, run_dir: Path, train_examples=None, valid_examples=None, progress: bool = True) -> Path:
    from empathkit.methods.ecg_lora.trainer import train_ecg as _t

    return _t(cfg, run_dir, train_examples, valid_examples, progress)


def _train(cfg: dict, run_dir: Path, progress: bool = True) -> Path:
    return train_ecg(cfg, run_dir, progress=progress)


SPEC = MethodSpec("ecg-lora", ECGConfig, load=load, train=_train,
                  description="emotion-conditioned gated LoRA (ECG-LoRA): per-example gate on every LoRA update")

__all__ = ["SPEC", "ECGConfig", "ECGModelConfig", "ECGTrainConfig", "ECGGenerator", "EmotionGate", "load",
           "train_ecg"]
