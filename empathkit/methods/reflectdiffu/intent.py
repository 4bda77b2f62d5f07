"""Intent twice (Sec. 3.3.1): Exploring, the Sampling policy with its reward, and Correcting.

- **Exploring** (Eq. 5): p_semantic = softmax(cos(Q, P) / t) over learned intent prototypes P; Intent_first =
  (p_semantic + alpha * p_intent) / (1 + alpha), a distribution (the division only rescales Eq. 5's sum).
  Its embedding (Intent_first @ E_intent) conditions the DDPMs' noise predictors.
- **Sampling**: the policy M_p (two linear layers) over mean-pool(Emo_fused) gives pi over the intents, restricted
  to the predicted emotion's Intent_refer (Table 1). Actions are drawn from a behaviour policy
  mu = (1 - eps) * pi (detached) + eps * uniform(Intent_refer) (the exploration-exploitation trade-off); the
  importance ratio pi(a) / mu(a) corrects for it: loss = -mean(min(pi/mu, clip) * (R - baseline)), the
  importance-weighted REINFORCE estimator (its gradient is E_mu[pi/mu * A * grad log pi]).
- **Reward** (Eq. 9): R = sigmoid(Emo_pol[i] . E_intent[a]) with Emo_pol = Emo_pos when the gold emotion is positive
  (MIME grouping), else Emo_neg; the dot product is divided by sqrt(d) (a raw d-dim dot product saturates the
  sigmoid); R is a detached signal (it must not train the embeddings to please itself).
- **Correcting**: a layer sharing E_intent's weights (logits = (state + E_intent[a]) E_intent^T / sqrt(d) + b)
  trained with cross-entropy against the *annotated* intent of the response (never the sampled action).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def behaviour_policy(pi: torch.Tensor, refer_mask: torch.Tensor, epsilon: float) -> torch.Tensor:
    """mu = (1 - eps) * pi.detach() + eps * uniform over each row's allowed actions."""
    uni = refer_mask.float() / refer_mask.float().sum(-1, keepdim=True).clamp(min=1.0)
    return (1.0 - epsilon) * pi.detach() + epsilon * uni


def sample_actions(mu: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
    if generators is None:
        return torch.multinomial(mu, 1).squeeze(-1)
    return torch.stack([torch.multinomial(mu[i], 1, generator=g).squeeze(-1) for i, g in enumerate(generators)])


def importance_pg_loss(pi: torch.Tensor, mu: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                       clip: float | None = None, baseline: str = "batch-mean") -> tuple[torch.Tensor, torch.Tensor]:
    """(-mean(rho * A), rho) with rho = pi(a) / mu(a) (mu detached, clipped at ``clip``) and A = R - baseline."""
    idx = actions[:, None]
    rho = pi.gather(1, idx).squeeze(1) / mu.gather(1, idx).squeeze(1).detach().clamp(min=1e-8)
    if clip is not None:
        rho = rho.clamp(max=clip)
    r = rewards.detach()
    adv = r - r.mean() if baseline == "batch-mean" and len(r) > 1 else r
    return -(rho * adv).mean(), rho.detach()


class IntentTwice(nn.Module):
    def __init__(self, d: int, n_intents: int, hidden: int, alpha: float, temperature: float):
        super().__init__()
        self.alpha, self.temperature = alpha, temperature
        self.embed = nn.Embedding(n_intents, d)  # E_intent, shared with the correcting layer
        nn.init.normal_(self.embed.weight, std=1.0)
        self.prototypes = nn.Parameter(torch.randn(n_intents, d) * d ** -0.5)
        self.policy = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_intents))
        self.correct_bias = nn.Parameter(torch.zeros(n_intents))

    # -- Exploring -----------------------------------------------------------------------------------------------------
    def explore(self, Q: torch.Tensor, p_intent: torch.Tensor) -> torch.Tensor:
        cos = F.normalize(Q, dim=-1) @ F.normalize(self.prototypes, dim=-1).T
        p_sem = F.softmax(cos / self.temperature, -1)
        return (p_sem + self.alpha * p_intent) / (1.0 + self.alpha)

    def condition(self, intent_first: torch.Tensor) -> torch.Tensor:
        return intent_first @ self.embed.weight

    # -- Sampling ------------------------------------------------------------------------------------------------------
    def pi(self, state: torch.Tensor, refer_mask: torch.Tensor) -> torch.Tensor:
        logits = self.policy(state).masked_fill(~refer_mask, float("-inf"))
        return F.softmax(logits, -1)

    def reward(self, emo_pos: torch.Tensor, emo_neg: torch.Tensor, positive: torch.Tensor,
               actions: torch.Tensor) -> torch.Tensor:
        """Eq. 9 per row: sigmoid(Emo_pol[i] . E_intent[a_i]), detached."""
        pol = torch.where(positive[:, None], emo_pos, emo_neg)
        return torch.sigmoid((pol * self.embed(actions)).sum(-1) / pol.shape[-1] ** 0.5).detach()

    # -- Correcting ----------------------------------------------------------------------------------------------------
    def correct(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Final-intent logits from the fused state and the chosen Intent_twice (weights shared with E_intent).

        Scaled by 1/d, not 1/sqrt(d): E_intent is N(0, 1), so the chosen action's own term E[a].E[a] is ~d; over
        sqrt(d) it put the sampled action ~sqrt(d) (~10) logits above the rest and L_intent started at ~10 instead
        of ln 9, spending the first hundreds of steps (and E_intent, shared with the condition and reward) on
        unlearning it. Over d the layer starts near uniform."""
        h = state + self.embed(actions)
        return h @ self.embed.weight.T / h.shape[-1] + self.correct_bias
