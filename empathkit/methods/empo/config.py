"""EmPO configuration: the ``train.dpo`` section of a run config (everything else in ``train`` goes to SFT).

Paper defaults (EmPO §4, Table 3, App. A): β = 0.05, learning rate 1e-6, 3 epochs with a fresh rejected draw per
epoch, cosine decay without warmup, AdamW, sigmoid (standard DPO) loss, batch 64, and prompt/sequence lengths at the
95th percentile of the token lengths of the preference data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from empathkit.training.config import LMModelConfig, LMTrainConfig


class DPOLoraConfig(BaseModel):
    """LoRA of the DPO adapter (``None`` fields are copied from the SFT adapter's config)."""

    model_config = {"extra": "forbid"}

    r: int | None = Field(None, ge=1)
    alpha: float | None = Field(None, gt=0)
    dropout: float | None = Field(None, ge=0, lt=1)
    target_modules: list[str] | str | None = None


class DPOSection(BaseModel):
    model_config = {"extra": "forbid"}

    # --- EmPO hyper-parameters (paper defaults) ---
    beta: float = Field(0.05, gt=0, description="DPO β (paper: 0.05)")
    learning_rate: float = Field(1e-6, gt=0, description="paper: 1e-6 (AdamW, cosine decay, no warmup)")
    epochs: int = Field(3, ge=1, description="paper: 3, with a fresh rejected draw per epoch")
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="fraction of steps with linear warmup (paper: 0)")
    loss_type: str = Field("sigmoid", description="TRL loss type; 'sigmoid' is the DPO loss of the paper")
    batch_size: int = Field(8, ge=1, description="pairs per device step")
    gradient_accumulation_steps: int = Field(8, ge=1, description="8 × 8 = the paper's batch of 64")
    max_steps: int = Field(-1, description="cap on optimiser steps (-1 = run all epochs)")
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0

    # --- preference data ---
    pairs_per_prompt: int = Field(1, ge=1, description="k rejected completions per prompt and epoch")
    redraw_each_epoch: bool = Field(True, description="fresh rejected draw per epoch (paper); false = epoch 0's draw")
    train_limit: int | None = Field(None, ge=1, description="number of DPO prompts (None = data.train_limit / all)")
    candidate_pool: Literal["all", "subset"] = Field(
        "all", description="draw rejected turns from every train conversation ('all') or only the DPO prompts")
    max_history: int | None = Field(None, ge=1, description="context turns kept in a prompt (None = all)")

    # --- lengths: None = the `length_percentile` of the data's token lengths (paper: 95th) ---
    max_prompt_length: int | None = Field(None, ge=8, description="prompts longer than this lose their oldest turns")
    max_completion_length: int | None = Field(None, ge=1, description="longer completions are truncated")
    length_percentile: float = Field(95.0, gt=0, le=100)

    # --- model / adapter ---
    adapter: Literal["new-on-merged-sft"] = Field(
        "new-on-merged-sft",
        description="merge the SFT adapter into the base weights in memory and train a fresh DPO LoRA; disabling it "
                    "gives exactly the SFT model, which is the DPO reference (no second model copy)")
    lora: DPOLoraConfig = Field(default_factory=DPOLoraConfig)
    sft_run: str | None = Field(None, description="reuse a trained SFT run directory instead of training SFT")
    system_prompt: str | None = Field(None, description="None = the SFT run's system prompt")
    gradient_checkpointing: bool = False

    # --- bookkeeping ---
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(200, ge=1, description="checkpoint every N steps (resumable)")
    save_total_limit: int = Field(2, ge=1)
    resume: bool = Field(True, description="resume from the last checkpoint in <run>/dpo/ when there is one")
    save_pairs: bool = Field(True, description="write every epoch's draw to <run>/preference/epoch-<e>.jsonl")


class EmpoTrainConfig(LMTrainConfig):
    """``train:`` = the SFT ``train`` keys (the SFT stage) plus ``dpo:`` (the preference-optimisation stage)."""

    dpo: DPOSection = Field(default_factory=DPOSection)


class EmpoConfig(BaseModel):
    """Both sections (``MethodSpec.config_cls``): ``model`` is the SFT model section (backbone, LoRA, prompt)."""

    model_config = {"extra": "forbid"}

    model: LMModelConfig = Field(default_factory=LMModelConfig)
    train: EmpoTrainConfig = Field(default_factory=EmpoTrainConfig)
