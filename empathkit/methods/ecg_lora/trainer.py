"""ECG-LoRA training: the shared causal-LM trainer (:mod:`empathkit.training.trainer`) with the gate in the forward
pass, ``L_LM + W1·L_con + W2·L_reg``, separate learning rates for LoRA and for the gate/encoder, and JSONL logging of
gates per emotion and loss terms (rank 0 writes the log rows and the gate state; every rank holds the same gate,
whose gradients DDP averages like the adapter's)."""

from __future__ import annotations

import json
from pathlib import Path

from empathkit.data.emotions import gradient_group, polarity
from empathkit.methods.ecg_lora.config import ECGModelConfig, ECGTrainConfig
from empathkit.methods.ecg_lora.gate import EmotionGate
from empathkit.methods.ecg_lora.layers import attach_gate
from empathkit.methods.ecg_lora.losses import contrastive_loss, regularization_loss
from empathkit.training.diagnostics import lora_parameters
from empathkit.training.driver import run_training
from empathkit.training.trainer import CausalLMTrainer


def apply_ablation(model: dict, train: dict) -> tuple[dict, dict]:
    """Resolve ``train.ablation`` into the switches (raw dicts, before validation)."""
    ab = train.get("ablation", "none")
    model, train = dict(model), dict(train)
    if ab == "no-emotion-conditioning":
        model["emotion_conditioning"] = False
    elif ab == "no-reg-loss":
        train["reg_loss"] = False
    elif ab == "no-con-loss":
        train["con_loss"] = False
    return model, train


def make_gate(mc: ECGModelConfig) -> EmotionGate:
    return EmotionGate(mc.num_emotions, mc.d_emo, mc.emotion_conditioning, mc.encoder_dropout, mc.gate_init_bias,
                       mc.gate_init)


def group_means(values: dict[str, float]) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for e, v in values.items():
        for g in (gradient_group(e), polarity(e)):
            groups.setdefault(g, []).append(v)
    return {g: sum(v) / len(v) for g, v in groups.items()}


class ECGTrainer(CausalLMTrainer):
    def __init__(self, *args, gate: EmotionGate, model_cfg: ECGModelConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.mcfg = model_cfg
        self._last: tuple | None = None
        self._acc: dict[str, float] = {}
        self._n = 0
        self._last_log_step = -1

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            self.gate.current = None  # no stale training gates after training

    @property
    def aux_enabled(self) -> bool:
        return self.mcfg.emotion_conditioning  # w/o EmoCond: the auxiliary losses have nothing to act on (removed)

    def lm_forward(self, model, inputs, emotion_ids):
        gates, v = self.gate(emotion_ids.to(self.gate.gate.weight.device))
        self._last = (gates, v, emotion_ids)
        # kept set after the forward (not a context manager) so that gradient checkpointing, which re-runs the
        # forward during backward, sees the same gates
        self.gate.current = gates
        return model(**inputs)

    def extra_losses(self, model, emotion_ids):
        tc: ECGTrainConfig = self.tcfg  # type: ignore[assignment]
        gates, v, ids = self._last
        ids = ids.to(gates.device)
        con = contrastive_loss(gates, ids, tc.omega, tc.sep_margin)
        reg = regularization_loss(v, ids, tc.lambda_inter, tc.lambda_intra, tc.reg_margin)
        out = {}
        if self.aux_enabled and tc.con_loss and tc.w_con > 0:
            out["con"] = tc.w_con * con["con"]
        if self.aux_enabled and tc.reg_loss and tc.w_reg > 0:
            out["reg"] = tc.w_reg * reg["reg"]
        if model.training:
            self._accumulate(gates, {**con, **reg}, out)
        return out

    def _accumulate(self, gates, terms, weighted) -> None:
        vals = {k: float(v.detach()) for k, v in terms.items()}
        vals["gate_batch_mean"] = float(gates.detach().mean())
        vals["weighted_aux"] = float(sum(v.detach() for v in weighted.values())) if weighted else 0.0
        for k, v in vals.items():
            self._acc[k] = self._acc.get(k, 0.0) + v
        self._n += 1
        step = self.state.global_step
        if step % self.tcfg.log_every == 0 and step != self._last_log_step and self.sink is not None:
            self._last_log_step = step
            if self.is_world_process_zero():
                self._write_gate_row(step)
            self._acc, self._n = {}, 0

    def _write_gate_row(self, step: int) -> None:
        gv = self.gate.values()
        self.sink.write({"kind": "gate", "step": step, "epoch": self.state.epoch,
                         "losses": {k: v / self._n for k, v in self._acc.items()},
                         "gate": gv, "gate_group": group_means(gv),
                         "lr": {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
                         if self.optimizer is not None else {}})

    def lora_params(self, model):
        return lora_parameters(model, exclude=("ecg_gate",))

    def param_groups(self, model):
        tc: ECGTrainConfig = self.tcfg  # type: ignore[assignment]
        decay = set(self.get_decay_parameter_names(model))
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        lora = [(n, p) for n, p in named if "ecg_gate" not in n]
        gate = [p for n, p in named if "ecg_gate" in n]
        gwd = tc.weight_decay if tc.gate_weight_decay is None else tc.gate_weight_decay
        return [{"params": [p for n, p in lora if n in decay], "weight_decay": tc.weight_decay, "name": "lora"},
                {"params": [p for n, p in lora if n not in decay], "weight_decay": 0.0, "name": "lora-no-decay"},
                {"params": gate, "weight_decay": gwd, "lr": tc.gate_lr, "name": "gate"}]

    def save_extra(self, output_dir):
        self.gate.save(output_dir)

    def load_extra(self, checkpoint_dir):
        if (Path(checkpoint_dir) / "ecg_gate.safetensors").is_file():
            self.gate.load_weights(checkpoint_dir)


def parameter_report(model, gate: EmotionGate, mc: ECGModelConfig) -> dict:
    """Our parameter counts next to the paper's claim (0.12 % extra parameters on a 7B backbone)."""
    from empathkit.methods.ecg_lora.params import paper_backbone_report

    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n and "ecg_gate" not in n)
    g = gate.num_parameters()
    base = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n and "ecg_gate" not in n)
    return {
        "backbone": mc.backbone, "base_parameters": base, "lora_parameters": lora, "gate_parameters": g,
        "trainable_parameters": lora + g,
        "trainable_pct_of_base": 100 * (lora + g) / base, "lora_pct_of_base": 100 * lora / base,
        "gate_pct_of_base": 100 * g / base, "gate_pct_of_lora": 100 * g / max(lora, 1),
        "paper_claim": "0.12% additional parameters on a 7B backbone",
        "paper_backbones_same_adapter": paper_backbone_report(mc.lora_r, mc.target_modules, mc.d_emo, mc.num_emotions),
    }


def train_ecg(cfg: dict, run_dir: Path, train_examples=None, valid_examples=None, progress: bool = True) -> Path:
    cfg = dict(cfg)
    cfg["model"], cfg["train"] = apply_ablation(cfg.get("model", {}), cfg.get("train", {}))
    state: dict = {}

    def prepare(model, tok, mc, tc):
        gate = make_gate(mc)
        attach_gate(model, gate)
        state.update(gate=gate, model=model, mc=mc)
        return model, {"gate": gate, "model_cfg": mc}

    def summary(trainer, mc, tc):  # rank 0 only
        rep = parameter_report(trainer.model, trainer.gate, mc)
        (Path(run_dir) / "parameters.json").write_text(json.dumps(rep, indent=2), encoding="utf-8")
        return {"parameter_report": rep, "final_gates": trainer.gate.values(),
                "aux_losses": {"con": tc.con_loss and mc.emotion_conditioning,
                               "reg": tc.reg_loss and mc.emotion_conditioning}}

    return run_training(cfg, Path(run_dir), train_examples, valid_examples, progress, trainer_cls=ECGTrainer,
                        prepare=prepare, model_cfg_cls=ECGModelConfig, train_cfg_cls=ECGTrainConfig,
                        extra_summary=summary)

