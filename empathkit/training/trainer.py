"""The transformers ``Trainer`` shared by the causal-LM fine-tuning methods: token counting, optional per-emotion
LoRA gradient diagnostics, and the hooks a method overrides.

Hooks (ECG-LoRA overrides all of them): :meth:`CausalLMTrainer.lm_forward` (condition the forward pass),
:meth:`CausalLMTrainer.extra_losses` (terms added to the LM loss), :meth:`CausalLMTrainer.param_groups` (optimiser
groups, e.g. a separate learning rate), :meth:`CausalLMTrainer.save_extra` / :meth:`CausalLMTrainer.load_extra`
(state outside the PEFT adapter, saved with every checkpoint and the final adapter) and
:meth:`CausalLMTrainer.lora_params` (what the gradient diagnostics measure).

Multi-process: the Trainer saves checkpoints on rank 0 only (``_save`` and so ``save_extra`` run there); the
diagnostics run on rank 0 only, on the unwrapped model (a DDP forward without its backward would desynchronise the
gradient reducer).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import Trainer

from empathkit.training.config import LMTrainConfig
from empathkit.training.diagnostics import emotion_grad_norms, lora_parameters
from empathkit.training.logs import JsonlLog


class CausalLMTrainer(Trainer):
    """``Trainer`` + token counting + optional per-example LoRA gradient-norm diagnostics by emotion (see the module
    docstring for the hooks)."""

    def __init__(self, *args, sink: JsonlLog | None = None, train_cfg: LMTrainConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sink = sink
        self.tcfg = train_cfg or LMTrainConfig()
        self.tokens_seen = 0
        self.step_seconds = 0.0  # time inside training_step (forward + backward), diagnostics excluded
        self.diag_seconds = 0.0
        self._last_diag_step = -1

    def training_step(self, model, inputs, num_items_in_batch=None):
        t0, d0 = time.perf_counter(), self.diag_seconds
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.step_seconds += time.perf_counter() - t0 - (self.diag_seconds - d0)
        return loss

    # -- forward / loss ----------------------------------------------------------------------------------------
    def lm_forward(self, model, inputs: dict, emotion_ids: torch.Tensor):
        return model(**inputs)

    def extra_losses(self, model, emotion_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        emotion_ids = inputs.pop("emotion_ids", None)
        if emotion_ids is None:
            emotion_ids = torch.full((inputs["input_ids"].shape[0],), -1, dtype=torch.long)
        if model.training:
            self.tokens_seen += int(inputs["attention_mask"].sum())
            if self.tcfg.log_emotion_grads and self.state.global_step % self.tcfg.log_every == 0 \
                    and self.state.global_step != self._last_diag_step:
                self._last_diag_step = self.state.global_step
                self.log_grad_diagnostics(model, inputs, emotion_ids)
        if num_items_in_batch is not None:
            inputs["num_items_in_batch"] = num_items_in_batch
        if model.training and self._target_logits_ok(inputs):
            outputs = self._target_logits_forward(model, inputs, emotion_ids, num_items_in_batch)
        else:
            outputs = self.lm_forward(model, inputs, emotion_ids)
        scale = self._token_average_scale(num_items_in_batch)
        loss = outputs.loss if scale == 1 else outputs.loss * scale
        extra = self.extra_losses(model, emotion_ids)
        for v in extra.values():
            loss = loss + v
        return (loss, outputs) if return_outputs else loss

    def _target_logits_ok(self, inputs: dict) -> bool:
        """``train.target_logits`` applies: a causal LM whose forward takes ``logits_to_keep`` (not T5 / BART)."""
        if not (self.tcfg.target_logits and "labels" in inputs):
            return False
        ok = getattr(self, "_keep_ok", None)
        if ok is None:
            import inspect

            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            ok = not getattr(base.config, "is_encoder_decoder", False) and \
                "logits_to_keep" in inspect.signature(base.forward).parameters
            self._keep_ok = ok
        return ok

    def _target_logits_forward(self, model, inputs: dict, emotion_ids: torch.Tensor, num_items_in_batch):
        """The LM loss with the LM head run only where some row predicts a target token (position t predicts label
        t + 1; the union over the rows, passed as ``logits_to_keep``, so the call still goes through ``model`` and
        its DDP wrapper). The loss is transformers' ``ForCausalLMLoss`` on those positions — every other position
        has label -100 and adds nothing — so it equals the full computation up to float rounding
        (tests/test_training_target_logits.py). Hand-written because transformers computes the head everywhere.
        On ``sft/cpu-small`` the kept positions are ~36 % of a length-grouped batch (~55 % of a random one)."""
        import torch.nn.functional as F

        inputs = dict(inputs)
        labels = inputs.pop("labels")
        inputs.pop("num_items_in_batch", None)
        keep = (labels[:, 1:] != -100).any(0).nonzero().squeeze(-1)
        outputs = self.lm_forward(model, {**inputs, "logits_to_keep": keep}, emotion_ids)
        target = labels[:, keep + 1]
        loss = F.cross_entropy(outputs.logits.float().flatten(0, 1), target.flatten(), ignore_index=-100,
                               reduction="sum")
        n = num_items_in_batch if num_items_in_batch is not None else (target != -100).sum()
        outputs["loss"] = loss / (n.to(loss.device) if torch.is_tensor(n) else n)
        return outputs

    def _token_average_scale(self, num_items_in_batch) -> int:
        """What ``Trainer.compute_loss`` multiplies the LM loss by (and this override must too): with several
        processes ``num_items_in_batch`` counts the target tokens of ALL processes, so each process's loss is
        ``local sum / global count``; × processes makes DDP's gradient average the mean over all target tokens.
        Without it every step would move ``1 / processes`` as far (the extra losses are per-process means: unscaled).
        """
        n = self.accelerator.num_processes // self.get_tp_size()
        if n > 1 and num_items_in_batch is not None and self.args.average_tokens_across_devices \
                and self.model_accepts_loss_kwargs:
            return n
        return 1

    # -- optimiser ---------------------------------------------------------------------------------------------
    def param_groups(self, model) -> list[dict]:
        decay = set(self.get_decay_parameter_names(model))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        return [{"params": [p for n, p in named if n in decay], "weight_decay": self.args.weight_decay, "name": "lora"},
                {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0, "name": "lora-no-decay"}]

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            m = self.model if model is None else model
            groups = [g for g in self.param_groups(m) if g["params"]]
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, m)
            self.optimizer = cls(groups, **kwargs)
        return self.optimizer

    # -- state beyond the adapter ------------------------------------------------------------------------------
    def save_extra(self, output_dir: str | Path) -> None:
        pass

    def load_extra(self, checkpoint_dir: str | Path) -> None:
        pass

    def _save(self, output_dir=None, state_dict=None):
        super()._save(output_dir, state_dict)
        self.save_extra(output_dir or self.args.output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self.load_extra(resume_from_checkpoint)

    def _load_best_model(self):
        super()._load_best_model()
        if self.state.best_model_checkpoint:
            self.load_extra(self.state.best_model_checkpoint)

    # -- diagnostics ---------------------------------------------------------------------------------------------
    def lora_params(self, model) -> list[torch.nn.Parameter]:
        return lora_parameters(model)

    def log_grad_diagnostics(self, model, inputs: dict, emotion_ids: torch.Tensor) -> None:
        """A ``kind: grad`` row of per-emotion LoRA gradient norms (:mod:`empathkit.training.diagnostics`)."""
        if self.sink is None or not self.is_world_process_zero():
            return
        m = self.accelerator.unwrap_model(model)
        params = self.lora_params(m)
        if not params:
            return
        t0 = time.perf_counter()
        row = emotion_grad_norms(lambda one, eid: self.lm_forward(m, one, eid), inputs, emotion_ids, params)
        self.sink.write({"kind": "grad", "step": self.state.global_step, **row})
        self.diag_seconds += time.perf_counter() - t0
