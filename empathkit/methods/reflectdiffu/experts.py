"""C-Experts emotion classification (Eq. 4, App. C.2).

Two experts over the shared emotion projection E_emo·Q: M_pos (W_pos) and M_neg (W_neg). The VADER compound of each
context votes positive (>= threshold), negative (<= -threshold) or neutral; the majority v of the batch picks the
expert, a neutral majority (and any tie, which has no majority) uses soft voting — the mean of both experts'
probability distributions. L_em = L_NTX (NT-Xent on Q with the emotion labels as pseudo-labels) + L_cls (-log p[e]),
computed on log-probabilities (never cross-entropy applied to probabilities).
``use_c_experts=False``: one linear head on Q, L_em = cross-entropy alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

POS, NEG, NEU = "pos", "neg", "neu"


def vote(compound: float, threshold: float = 0.05) -> str:
    return POS if compound >= threshold else NEG if compound <= -threshold else NEU


def majority(votes: Sequence[str]) -> str:
    """The batch's expert choice: the most frequent vote; neutral on a tie (no majority) or an empty batch."""
    counts = {v: sum(1 for x in votes if x == v) for v in (POS, NEG, NEU)}
    top = max(counts.values())
    winners = [v for v, c in counts.items() if c == top]
    return winners[0] if len(winners) == 1 else NEU


def nt_xent(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Supervised NT-Xent (App. C.2, Eq. 17-18): s(i, j) = cos(z_i, z_j) / t; for every ordered pair (i, j), i != j,
    with the same label, -log(exp s(i,j) / sum_{k != i} exp s(i,k)); averaged over those pairs (0 without any)."""
    z = F.normalize(z, dim=-1)
    s = z @ z.T / temperature
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    log_den = torch.logsumexp(s.masked_fill(eye, -math.inf), dim=1, keepdim=True)
    pos = labels[:, None].eq(labels[None, :]) & ~eye
    if not pos.any():
        return z.sum() * 0.0
    return -(s - log_den)[pos].mean()


class CExperts(nn.Module):
    """``forward(Q, choice) -> log p`` (B, n_emo) for the expert ``choice`` (pos / neg / neu = soft voting)."""

    def __init__(self, d: int, n_emo: int = 32, experts: bool = True):
        super().__init__()
        self.experts = experts
        if experts:
            self.e_emo = nn.Linear(d, d)
            self.w_pos = nn.Linear(d, n_emo)
            self.w_neg = nn.Linear(d, n_emo)
        else:
            self.head = nn.Linear(d, n_emo)

    def forward(self, Q: torch.Tensor, choice: str | Sequence[str] = NEU) -> torch.Tensor:
        if not self.experts:
            return F.log_softmax(self.head(Q), -1)
        h = self.e_emo(Q)
        lp_pos, lp_neg = F.log_softmax(self.w_pos(h), -1), F.log_softmax(self.w_neg(h), -1)
        lp_neu = torch.logsumexp(torch.stack([lp_pos, lp_neg]), 0) - math.log(2.0)  # log of the mean distribution
        choices = [choice] * len(Q) if isinstance(choice, str) else list(choice)
        pick = {POS: lp_pos, NEG: lp_neg, NEU: lp_neu}
        return torch.stack([pick[c][i] for i, c in enumerate(choices)])

    def loss(self, Q: torch.Tensor, log_p: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict:
        cls = F.nll_loss(log_p, labels)
        if not self.experts:
            return {"em": cls, "em_cls": cls}
        ntx = nt_xent(Q, labels, temperature)
        return {"em": ntx + cls, "em_cls": cls, "em_ntx": ntx}
