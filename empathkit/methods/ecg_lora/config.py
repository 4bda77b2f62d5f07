"""ECG-LoRA configuration: the shared causal-LM sections (:mod:`empathkit.training.config`) plus the gate, the
auxiliary losses and the inference-time gate control.

Defaults follow the paper's Table 3 where the CPU allows (d_emo 256, 32 emotions, gate lr 1e-4, loss weights);
the ``paper-*`` recipes set every Table 3 value.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from empathkit.training.config import LMModelConfig, LMTrainConfig


class ECGModelConfig(LMModelConfig):
    """``model:`` section — the shared adapter settings + the emotion gate + inference-time gate control."""

    finetune: Literal["lora"] = "lora"
    d_emo: int = Field(256, ge=1, description="emotion embedding dimension (Table 3: 256)")
    num_emotions: int = Field(32, ge=1)
    emotion_conditioning: bool = Field(True, description="false = ablation 'w/o EmoCond': one shared learned "
                                                         "embedding, the gate does not see the emotion")
    encoder_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the emotion vector (training only); "
                                   "with 0 same-emotion vectors are identical and L_cons / L_intra are exactly 0")
    gate_init_bias: float = Field(0.0, description="initial bias of the gate unit (0 → gates start at 0.5)")
    gate_init: Literal["uniform", "random"] = Field("uniform", description="'uniform': gate-unit weights start at 0 "
                                                    "so every emotion starts at the same gate; 'random': PyTorch's "
                                                    "default Linear init (gates start spread around 0.5)")
    # inference-time control (generation / chat / serve); never used in training
    gate: float | None = Field(None, ge=0.0, description="force this gate for every example (causal control)")
    gate_per_emotion: dict[str, float] = Field(default_factory=dict, description="force gates per emotion label")
    emotion_source: Literal["gold", "predicted"] = Field("gold", description="evaluation: gold labels (default) or "
                                                                             "labels from the emotion predictor")
    unknown_emotion: Literal["predict", "mean"] = Field("predict", description="chat without a label: ask the "
                                                        "emotion predictor, or use the mean gate over the 32 emotions")


class ECGTrainConfig(LMTrainConfig):
    """``train:`` section — the shared optimisation + the gate learning rate and the auxiliary losses (App. 7.1)."""

    gate_lr: float = Field(1e-4, gt=0, description="learning rate of the emotion encoder + gate unit (Table 3)")
    gate_weight_decay: float | None = Field(None, ge=0, description="None = same as weight_decay")
    w_con: float = Field(5.0, ge=0, description="W1 (Table 3 W_emo): weight of the gate-contrastive loss")
    omega: float = Field(0.5, ge=0, le=1, description="ω (Table 3 W_cons): consistency vs separation")
    sep_margin: float = Field(0.2, ge=0, description="SM (Table 3 Δ_sep)")
    w_reg: float = Field(0.2, ge=0, description="W2 (Table 3 W_reg): weight of the embedding regulariser")
    reg_margin: float = Field(1.0, ge=0, description="RM (Table 3 Δ_reg)")
    lambda_inter: float = Field(0.9, ge=0)
    lambda_intra: float = Field(0.1, ge=0)
    con_loss: bool = Field(True, description="false = ablation 'w/o ConLoss'")
    reg_loss: bool = Field(True, description="false = ablation 'w/o RegLoss'")
    ablation: Literal["none", "no-emotion-conditioning", "no-reg-loss", "no-con-loss"] = Field(
        "none", description="shortcut for the paper's ablations (sets the switches above / the model's)")
    log_emotion_grads: bool = True


class ECGConfig(BaseModel):
    """Both sections together (``MethodSpec.config_cls``); ``train.ablation`` is resolved before training."""

    model_config = {"extra": "forbid"}

    model: ECGModelConfig = Field(default_factory=ECGModelConfig)
    train: ECGTrainConfig = Field(default_factory=ECGTrainConfig)
