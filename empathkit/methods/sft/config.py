"""SFT configuration: the run config's ``model`` section (backbone + adapter) and ``train`` section (optimisation).

SFT trains with the shared causal-LM sections as they are (:mod:`empathkit.training.config`, where the fields and
their CPU defaults are documented); ECG-LoRA and EmPO extend them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from empathkit.training.config import ATTENTION_PROJECTIONS, LMModelConfig, LMTrainConfig  # noqa: F401

SFTModelConfig = LMModelConfig
SFTTrainConfig = LMTrainConfig


class SFTConfig(BaseModel):
    """Both sections together (``MethodSpec.config_cls``)."""

    model_config = {"extra": "forbid"}

    model: SFTModelConfig = Field(default_factory=SFTModelConfig)
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
