"""The ``model:`` / ``train:`` sections shared by every causal-LM fine-tuning method (SFT uses them as they are;
ECG-LoRA adds its gate and losses; EmPO adds ``train.dpo``).

Defaults are sized for this CPU machine (SmolLM2-135M, LoRA r=16 on q/k/v/o, dropout 0); the ``paper-*`` recipes
set the papers' values (ECG-LoRA Table 3: r=16, alpha=16, dropout 0.1, lr 4e-5, batch 4 × grad-accum 4, 8 epochs,
weight decay 0.01, warmup 0.2, patience 2).
"""

from __future__ import annotations

from typing import Callable, Literal

from pydantic import BaseModel, Field

ATTENTION_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class LMModelConfig(BaseModel):
    """``model:`` section — which backbone, how it is adapted, and the prompt it is trained/served with."""

    model_config = {"extra": "forbid"}

    backbone: str = Field("smollm2-135m-instruct", description="backbone name, HF id or local folder")
    finetune: Literal["lora", "full"] = Field("lora", description="LoRA adapter (PEFT) or full-parameter fine-tuning")
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="costs 22–29 % step time on CPU; paper uses 0.1")
    target_modules: list[str] | str = Field(default_factory=lambda: list(ATTENTION_PROJECTIONS),
                                            description="module names to adapt, or 'all-linear'")
    dtype: str = Field("float32", description="weights dtype at load time (float32 on CPU; bfloat16 on GPU)")
    system_prompt: str | None = Field(None, description="a fixed system prompt used in training and generation")
    template: str | None = Field(None, description="a structured prompt template name (empathkit.models.templates) "
                                                   "as system prompt: NLPCC 'structured prompt + LoRA'")
    use_emotion: bool = Field(False, description="with `template`: put the emotion label into the system prompt")

    def prompt_builder(self) -> Callable[..., str | None]:
        """``(emotion=None, situation=None) -> system prompt``: the one builder training and generation share
        (:func:`empathkit.models.templates.system_prompt_builder` on ``template`` / ``use_emotion`` /
        ``system_prompt``)."""
        from empathkit.models.templates import system_prompt_builder

        return system_prompt_builder(self.template, self.use_emotion, fixed=self.system_prompt)

    def example_prompt(self) -> Callable:
        """``example -> system prompt`` for training rows and preference prompts (the example's gold emotion)."""
        sp = self.prompt_builder()
        return lambda ex: sp(emotion=ex.emotion)


class LMTrainConfig(BaseModel):
    """``train:`` section — transformers ``Trainer`` arguments plus what the loss covers."""

    model_config = {"extra": "forbid"}

    lr: float = Field(2e-4, gt=0)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, description="> 0 overrides epochs")
    batch_size: int = Field(8, ge=1, description="per process (the effective batch is × processes × grad_accum)")
    eval_batch_size: int | None = Field(None, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    scheduler: str = Field("cosine", description="transformers lr_scheduler_type (cosine, linear, constant_with_warmup…)")
    weight_decay: float = Field(0.0, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_length: int = Field(128, ge=16, description="tokens per training sequence (oldest context turns dropped first)")
    train_on: Literal["target", "all-listener"] = Field(
        "target", description="'target': loss on the target listener turn only; 'all-listener': also on earlier "
                              "listener turns of the context (speaker turns and the prompt are always masked)")
    eval_every: int = Field(50, ge=1, description="evaluate (and checkpoint) every N optimiser steps")
    save_every: int | None = Field(None, ge=1, description="checkpoint every N steps when there is no validation set")
    early_stopping_patience: int | None = Field(2, ge=1, description="evaluations without eval-loss improvement")
    save_total_limit: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1, description="write a log.jsonl row every N steps")
    log_emotion_grads: bool = Field(False, description="at log steps also compute per-example LoRA gradient norms "
                                                        "(per emotion / group: ECG-LoRA Fig. 6); costs ~1 step")
    resume: bool | str = Field(False, description="true: continue from the last checkpoint of the run dir; or a path")
    bf16: bool | Literal["auto"] = Field(
        False, description="bf16 mixed precision (autocast); auto = where native (AVX512_BF16 / AMX CPUs, bf16 GPUs): "
                           "1.55x tokens/s on a 2-core AMX Xeon, slower where bf16 is emulated")
    sampling: Literal["random", "group_by_length"] = Field(
        "random", description="training order: random, or group_by_length (batches of similar length, less padding; "
                              "transformers' LengthGroupedSampler, still seeded)")
    target_logits: bool = Field(
        True, description="compute the LM head and the loss only at the positions that predict a target token (the "
                          "union over the batch's rows): the same loss with less work (training/trainer.py)")
    num_workers: int = Field(0, ge=0)
    gradient_checkpointing: bool = False
