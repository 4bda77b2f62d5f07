"""ECG-LoRA auxiliary losses, exactly as the paper's Appendix 7.1 (hand-written: no library implements them).

Table 3 names → arguments: W_emo = W1 (weight of L_con), W_cons = ω, Δ_sep = SM, W_reg = W2, Δ_reg = RM,
λ_inter, λ_intra.

Reading of the appendix's "Term 1 · Term 2" notation (the only sensible one): the normalised double sum runs over
the hinge, i.e. ``L_sep = 1/(N(N-1)) Σ_{i≠j} M_diff(i,j) · max(0, SM − |g_i − g_j|)`` and
``L_inter = 1/(M(M-1)) Σ_{k<l} max(0, RM − ‖u_k − u_l‖₂)`` (note: a k<l sum over M(M-1), as written).
``L_intra`` averages over the M unique emotions of the batch, counting only emotions with N_k ≥ 2.
"""

from __future__ import annotations

import torch


def contrastive_loss(gates: torch.Tensor, emotion_ids: torch.Tensor, omega: float = 0.5,
                     margin: float = 0.2) -> dict[str, torch.Tensor]:
    """``L_con = ω·L_cons + (1−ω)·L_sep`` over a batch of scalar gates ``(N,)`` and emotion ids ``(N,)``."""
    g = gates.reshape(-1)
    e = emotion_ids.reshape(-1)
    n = g.shape[0]
    zero = g.sum() * 0.0
    if n < 2:
        return {"con": zero, "cons": zero, "sep": zero}
    d = (g[:, None] - g[None, :]).abs()
    off = ~torch.eye(n, dtype=torch.bool, device=g.device)
    same = (e[:, None] == e[None, :]) & off
    diff = (e[:, None] != e[None, :]) & off
    norm = n * (n - 1)
    cons = (d * same).sum() / norm
    sep = (torch.clamp(margin - d, min=0.0) * diff).sum() / norm
    return {"con": omega * cons + (1.0 - omega) * sep, "cons": cons, "sep": sep}


def regularization_loss(vectors: torch.Tensor, emotion_ids: torch.Tensor, lambda_inter: float = 0.9,
                        lambda_intra: float = 0.1, margin: float = 1.0) -> dict[str, torch.Tensor]:
    """``L_reg = λ_inter·L_inter + λ_intra·L_intra`` over emotion vectors ``(N, d)`` and emotion ids ``(N,)``."""
    v = vectors.reshape(vectors.shape[0], -1)
    e = emotion_ids.reshape(-1)
    zero = v.sum() * 0.0
    labels = torch.unique(e)
    m = labels.numel()
    centroids, intra = [], zero
    for lab in labels:
        vk = v[e == lab]
        uk = vk.mean(dim=0)
        centroids.append(uk)
        if vk.shape[0] >= 2:
            intra = intra + (vk - uk).pow(2).sum(dim=1).mean()
    intra = intra / max(1, m)
    inter = zero
    if m >= 2:
        u = torch.stack(centroids)
        k, l = torch.triu_indices(m, m, offset=1, device=v.device)
        diff = u[k] - u[l]
        # ‖·‖₂ with a zero-safe gradient (identical centroids would give 0/0 in the backward pass)
        dist = torch.sqrt(diff.pow(2).sum(dim=1).clamp_min(1e-12))
        inter = torch.clamp(margin - dist, min=0.0).sum() / (m * (m - 1))
    return {"reg": lambda_inter * inter + lambda_intra * intra, "inter": inter, "intra": intra}
