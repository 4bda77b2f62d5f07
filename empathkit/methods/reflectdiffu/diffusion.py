"""The Emotion Mimicry Unit's DDPMs (Sec. 3.3.1, Eq. 6-7) over sentence states Q (one d-vector per context).

Hand-written: a DDPM over single continuous vectors with an intent-conditioned MLP noise predictor is a few lines,
and the diffusion libraries (diffusers' schedulers) are built around image tensors and are not installed here.

- forward process, closed form: q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I), abar_t = prod_{s<=t} (1 - beta_s),
  beta linear in [beta_start, beta_end] (paper: [1e-5, 5e-2]); t = 1..T.
- training: eps-prediction, || eps - M_theta(x_t, t, c) ||^2 at a uniform t (L_kl of Eq. 10 is this simplified
  DDPM objective); the one-step estimate x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t) is returned too.
- sampling: the reverse process walks t = T, T-1, ..., 1: x_{t-1} = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) /
  sqrt(alpha_t) + sigma_t z with sigma_t^2 = beta_t, and no noise at the last step (t = 1). Eq. 7 writes
  sqrt(1 - sum beta_s) for sqrt(1 - abar_t); we use the exact DDPM term. The walk starts from x_T ~ q(x_T | Q)
  (``x_start`` given: the context's own state, noised in closed form) or from N(0, I).
Noise comes from per-row ``torch.Generator`` s when given, so a row's sample does not depend on its batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1))
    a = t.float()[:, None] * freqs[None]
    out = torch.cat([torch.sin(a), torch.cos(a)], -1)
    return torch.nn.functional.pad(out, (0, dim - out.shape[-1]))


def randn_rows(shape: tuple[int, ...], generators: Sequence[torch.Generator] | None, device=None) -> torch.Tensor:
    """Standard normal noise (B, ...) with row i drawn from ``generators[i]`` (global RNG when None)."""
    if generators is None:
        return torch.randn(shape, device=device)
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generators]).to(device)


class Denoiser(nn.Module):
    """M_theta(x_t, t, c): an MLP on [x_t, emb(t), c] predicting the noise (c: the Intent_first embedding)."""

    def __init__(self, d: int, hidden: int, cond_dim: int | None):
        super().__init__()
        self.d, self.cond_dim = d, cond_dim
        self.net = nn.Sequential(nn.Linear(2 * d + (cond_dim or 0), hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, d))

    def forward(self, x, t, cond=None):
        parts = [x, timestep_embedding(t, self.d)]
        if self.cond_dim:
            parts.append(cond if cond is not None else x.new_zeros(len(x), self.cond_dim))
        return self.net(torch.cat(parts, -1))


class DDPM(nn.Module):
    def __init__(self, d: int, steps: int, beta_start: float, beta_end: float, hidden: int,
                 cond_dim: int | None = None):
        super().__init__()
        self.T = steps
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        abar = torch.cumprod(1.0 - betas, 0)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alphas", (1.0 - betas).float(), persistent=False)
        self.register_buffer("abar", abar.float(), persistent=False)
        self.model = Denoiser(d, hidden, cond_dim)

    def _at(self, buf: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return buf[t - 1][:, None]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) in closed form (t: (B,) in 1..T)."""
        a = self._at(self.abar, t)
        return a.sqrt() * x0 + (1.0 - a).sqrt() * noise

    def predict_x0(self, xt, t, eps):
        a = self._at(self.abar, t)
        return (xt - (1.0 - a).sqrt() * eps) / a.sqrt()

    def loss(self, x0: torch.Tensor, cond: torch.Tensor | None = None, weight: torch.Tensor | None = None,
             t: torch.Tensor | None = None, noise: torch.Tensor | None = None):
        """(noise-prediction MSE averaged over rows with ``weight`` > 0, x0_hat) at uniform (or given) t."""
        B = len(x0)
        t = t if t is not None else torch.randint(1, self.T + 1, (B,), device=x0.device)
        noise = noise if noise is not None else torch.randn_like(x0)
        xt = self.q_sample(x0, t, noise)
        eps = self.model(xt, t, cond)
        per = (eps - noise).pow(2).mean(-1)
        w = weight if weight is not None else torch.ones_like(per)
        mse = (per * w).sum() / w.sum().clamp(min=1.0)
        return mse, self.predict_x0(xt, t, eps)

    @torch.no_grad()
    def sample(self, shape_or_start: torch.Tensor | tuple[int, int], cond: torch.Tensor | None = None,
               generators: Sequence[torch.Generator] | None = None, trace: list | None = None) -> torch.Tensor:
        """The reverse walk t = T … 1 (``trace`` collects ``(t, noise_added)`` per step). A tensor argument is
        x_0 = Q, noised to x_T in closed form first; a shape starts from N(0, I)."""
        if isinstance(shape_or_start, torch.Tensor):
            x0 = shape_or_start
            B, device = len(x0), x0.device
            z = randn_rows(tuple(x0.shape), generators, device)
            x = self.q_sample(x0, torch.full((B,), self.T, dtype=torch.long, device=device), z)
        else:
            B, device = shape_or_start[0], None
            x = randn_rows(tuple(shape_or_start), generators)
        for step in range(self.T, 0, -1):
            t = torch.full((B,), step, dtype=torch.long, device=x.device)
            eps = self.model(x, t, cond)
            beta, alpha, abar = self.betas[step - 1], self.alphas[step - 1], self.abar[step - 1]
            mean = (x - beta / (1.0 - abar).sqrt() * eps) / alpha.sqrt()
            if step > 1:
                x = mean + beta.sqrt() * randn_rows(tuple(x.shape), generators, x.device)
            else:
                x = mean
            if trace is not None:
                trace.append((step, step > 1))
        return x
