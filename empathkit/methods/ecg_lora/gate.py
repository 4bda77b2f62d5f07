"""The emotion gate: ``G_emo = σ(W_g · Emb(id) + b_g)`` — one scalar per example (paper Eq. 3–4).

``EmotionGate`` owns the encoder (``Embedding(num_emotions, d_emo)`` + optional dropout) and the gate unit
(``Linear(d_emo, 1)`` + sigmoid), plus the per-batch gate state that the LoRA hooks read (see ``layers.py``).

Ablation ``emotion_conditioning=False`` ("w/o EmoCond"): the encoder has a single learned embedding row shared by
every example, so the gate is one learned scalar that does not see the emotion (the paper: "decoupling the gating
signals from emotion").
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from empathkit.data.emotions import EMOTIONS, NUM_EMOTIONS

GATE_WEIGHTS = "ecg_gate.safetensors"
GATE_CONFIG = "ecg_gate.json"


class EmotionEncoder(nn.Module):
    """Emotion id → dense vector ``v_emo`` (Eq. 3). ``dropout`` > 0 makes same-emotion vectors differ during
    training, which is what gives the consistency and intra-class terms something to do."""

    def __init__(self, num_emotions: int = NUM_EMOTIONS, d_emo: int = 256, conditioning: bool = True,
                 dropout: float = 0.0):
        super().__init__()
        self.conditioning = conditioning
        self.embedding = nn.Embedding(num_emotions if conditioning else 1, d_emo)
        self.dropout = nn.Dropout(dropout)

    def forward(self, emotion_ids: torch.Tensor) -> torch.Tensor:
        ids = emotion_ids if self.conditioning else torch.zeros_like(emotion_ids)
        return self.dropout(self.embedding(ids))


class EmotionGate(nn.Module):
    def __init__(self, num_emotions: int = NUM_EMOTIONS, d_emo: int = 256, conditioning: bool = True,
                 dropout: float = 0.0, init_bias: float = 0.0, init: str = "uniform"):
        super().__init__()
        self.config = {"num_emotions": num_emotions, "d_emo": d_emo, "conditioning": conditioning,
                       "dropout": dropout, "init_bias": init_bias, "init": init}
        self.encoder = EmotionEncoder(num_emotions, d_emo, conditioning, dropout)
        self.gate = nn.Linear(d_emo, 1)
        if init == "uniform":  # every emotion starts at the same gate σ(init_bias) (paper Fig. 4: "uniform init")
            nn.init.zeros_(self.gate.weight)
        elif init != "random":
            raise ValueError(f"gate init must be 'uniform' or 'random', not {init!r}")
        nn.init.constant_(self.gate.bias, init_bias)
        self.current: torch.Tensor | None = None  # (batch,) gates the LoRA hooks multiply by

    def forward(self, emotion_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gates (N,), emotion vectors (N, d_emo))``. Unknown ids (< 0) must be resolved before calling."""
        if (emotion_ids < 0).any():
            raise ValueError("emotion id -1 (unknown emotion) reached the gate: resolve it with a predictor first")
        v = self.encoder(emotion_ids)
        return torch.sigmoid(self.gate(v)).squeeze(-1), v

    @torch.no_grad()
    def values(self) -> dict[str, float]:
        """The deterministic (dropout-free) gate of every emotion."""
        ids = torch.arange(len(EMOTIONS), device=self.gate.weight.device)
        ids = ids if self.encoder.conditioning else torch.zeros_like(ids)
        g = torch.sigmoid(self.gate(self.encoder.embedding(ids))).squeeze(-1)
        return {e: float(x) for e, x in zip(EMOTIONS, g)}

    @contextlib.contextmanager
    def use(self, gates: torch.Tensor) -> Iterator[None]:
        """Within the block every gated LoRA layer scales example ``i``'s update by ``gates[i]``."""
        prev = self.current
        self.current = gates
        try:
            yield
        finally:
            self.current = prev

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(d / GATE_WEIGHTS))
        (d / GATE_CONFIG).write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        return d

    def load_weights(self, directory: str | Path) -> None:
        from safetensors.torch import load_file

        sd = load_file(str(Path(directory) / GATE_WEIGHTS))
        self.load_state_dict({k: v.to(self.gate.weight.device) for k, v in sd.items()})

    @classmethod
    def from_dir(cls, directory: str | Path) -> "EmotionGate":
        d = Path(directory)
        cfg = json.loads((d / GATE_CONFIG).read_text(encoding="utf-8"))
        g = cls(**cfg)
        g.load_weights(d)
        return g

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
