"""The ReflectDiffu network: the components assembled, with the four ablation switches of Table 2.

``losses(batch)`` — training (Eq. 12): L = delta * L_em + zeta * L_twice + eta * L_res with
L_twice = L_kl_pos + L_kl_neg + L_intent + policy_weight * L_pg (Eq. 10 plus the policy-gradient term that trains
M_p: the paper names the policy but no loss for it; dropping it would leave the policy untrained).
``state(batch, …)`` — inference: the decoder memory and what the model decided (emotion, Intent_first,
Intent_twice, final intent). ``next_logprobs`` — the pointer-generator's distribution over the extended vocabulary.

A switch that is off builds no module for its component (so its parameters are absent) and skips its graph:
- ``use_era``: E^R, the h~ projection, Attention(H, h~)          → Q = mean-pool(H)
- ``use_c_experts``: E_emo, W_pos, W_neg, NT-Xent, VADER voting  → one linear emotion head, CE
- ``use_intent_twice``: prototypes, policy, reward, correcting, the intent memory token; the DDPMs lose their intent
  condition. The policy's state is mean-pool(Emo_fused) + the Intent_first embedding (so Exploring informs the
  action even without the EMU).
- ``use_emu``: the two DDPMs and the fusion cross-attention       → the decoder memory is H
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from empathkit.data.emotions import EMOTIONS
from empathkit.methods.reflectdiffu.config import RDModelConfig
from empathkit.methods.reflectdiffu.decoder import PointerGeneratorDecoder
from empathkit.methods.reflectdiffu.diffusion import DDPM
from empathkit.methods.reflectdiffu.encoder import (
    ContagionEncoder,
    TokenEmbedding,
    masked_mean,
)
from empathkit.methods.reflectdiffu.experts import CExperts, majority
from empathkit.methods.reflectdiffu.intent import (
    IntentTwice,
    behaviour_policy,
    importance_pg_loss,
    sample_actions,
)
from empathkit.methods.reflectdiffu.sources import INTENTS


def refer_mask_from_map(intent_map: dict[str, Sequence[str]]) -> torch.Tensor:
    """(32 emotions, 9 intents) bool: the Intent_refer set of each emotion (all intents for an unmapped emotion)."""
    m = torch.zeros(len(EMOTIONS), len(INTENTS), dtype=torch.bool)
    for e, emo in enumerate(EMOTIONS):
        for it in intent_map.get(emo, INTENTS):
            m[e, INTENTS.index(it)] = True
    return m


class ReflectDiffu(nn.Module):
    def __init__(self, cfg: RDModelConfig, vocab_size: int, era_dim: int | None, refer_mask: torch.Tensor,
                 emb_init: torch.Tensor | None = None):
        super().__init__()
        self.cfg, d = cfg, cfg.emb_dim
        self.emb = TokenEmbedding(vocab_size, d, max(cfg.max_context_tokens, cfg.max_target_tokens) + 8,
                                  reasons=cfg.use_era, init=emb_init, dropout=cfg.dropout)
        self.encoder = ContagionEncoder(self.emb, d, cfg.heads, cfg.enc_layers, cfg.ff_dim, cfg.dropout,
                                        era_dim if cfg.use_era else None)
        self.experts = CExperts(d, len(EMOTIONS), experts=cfg.use_c_experts)
        self.register_buffer("refer_mask", refer_mask.clone())
        cond = d if cfg.use_intent_twice else None
        if cfg.use_intent_twice:
            self.intent = IntentTwice(d, len(INTENTS), cfg.policy_hidden, cfg.alpha, cfg.semantic_temperature)
        if cfg.use_emu:
            self.ddpm_pos = DDPM(d, cfg.diffusion_steps, cfg.beta_start, cfg.beta_end, cfg.denoiser_hidden, cond)
            self.ddpm_neg = DDPM(d, cfg.diffusion_steps, cfg.beta_start, cfg.beta_end, cfg.denoiser_hidden, cond)
            self.fuse = nn.MultiheadAttention(d, cfg.heads, dropout=cfg.dropout, batch_first=True)
            self.fuse_norm = nn.LayerNorm(d)
        self.decoder = PointerGeneratorDecoder(self.emb, vocab_size, d, cfg.heads, cfg.dec_layers, cfg.ff_dim,
                                               cfg.dropout)

    # -- shared pieces -------------------------------------------------------------------------------------------------
    def encode(self, b: dict):
        return self.encoder(b["ids"], b["reason_ids"], b.get("h"), b.get("h_mask"))

    def emotion_logp(self, Q: torch.Tensor, votes: Sequence[str], per_example: bool) -> torch.Tensor:
        if not self.cfg.use_c_experts:
            return self.experts(Q)
        return self.experts(Q, list(votes) if per_example else majority(votes))

    def _fuse(self, emo_pos, emo_neg, H, pad):
        """Emo_fused = CrossAttention([Emo_pos, H], [Emo_neg, H]) (Eq. 8), with a residual and LayerNorm."""
        q = torch.cat([emo_pos[:, None], H], 1)
        kv = torch.cat([emo_neg[:, None], H], 1)
        mpad = torch.cat([pad.new_zeros(len(pad), 1), pad], 1)
        a, _ = self.fuse(q, kv, kv, key_padding_mask=mpad, need_weights=False)
        return self.fuse_norm(q + a), mpad

    def _with_intent(self, memory, mpad, intent_ids):
        tok = self.intent.embed(intent_ids)[:, None]
        return torch.cat([tok, memory], 1), torch.cat([mpad.new_zeros(len(mpad), 1), mpad], 1)

    # -- training ------------------------------------------------------------------------------------------------------
    def losses(self, b: dict, delta: float = 1.0, zeta: float = 1.0, eta: float = 1.0,
               policy_weight: float = 1.0) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        H, Q, pad = self.encode(b)
        out: dict[str, torch.Tensor] = {}
        emo = b["emotion"]
        logp = self.emotion_logp(Q, b["votes"], per_example=False)
        has_emo = emo >= 0
        em = self.experts.loss(Q[has_emo], logp[has_emo], emo[has_emo], cfg.ntxent_temperature) if has_emo.any() \
            else {"em": Q.sum() * 0.0}
        out.update({f"L_{k}": v for k, v in em.items()})
        twice = Q.new_zeros(())
        cond = None
        if cfg.use_intent_twice:
            intent_first = self.intent.explore(Q, b["p_intent"])
            cond = self.intent.condition(intent_first)
        positive = b["positive"]
        emo_pos = emo_neg = Q
        memory, mpad = H, pad
        if cfg.use_emu:
            w_pos = positive.float() if cfg.emu_split == "gold-polarity" else torch.ones_like(positive, dtype=torch.float)
            w_neg = (~positive).float() if cfg.emu_split == "gold-polarity" else w_pos
            x0 = Q.detach()  # the DDPMs model Q; their loss must not pull the encoder towards easy-to-denoise states
            l_pos, emo_pos = self.ddpm_pos.loss(x0, cond, w_pos)
            l_neg, emo_neg = self.ddpm_neg.loss(x0, cond, w_neg)
            if cfg.emu_train_state == "walk":
                emo_pos, emo_neg = self.ddpm_pos.sample(x0, cond), self.ddpm_neg.sample(x0, cond)
            out["L_kl_pos"], out["L_kl_neg"] = l_pos, l_neg
            twice = twice + l_pos + l_neg
            memory, mpad = self._fuse(emo_pos, emo_neg, H, pad)
        if cfg.use_intent_twice:
            state = masked_mean(memory, ~mpad) + cond  # the policy sees Emo_fused and Intent_first
            refer = self.refer_mask[logp.argmax(-1)]
            pi = self.intent.pi(state, refer)
            mu = behaviour_policy(pi, refer, cfg.behaviour_epsilon)
            actions = sample_actions(mu)
            reward = self.intent.reward(emo_pos, emo_neg, positive, actions)
            pg, rho = importance_pg_loss(pi, mu, actions, reward, cfg.ratio_clip, cfg.reward_baseline)
            logits = self.intent.correct(state, actions)
            gold = b["intent"]
            has = gold >= 0
            l_int = F.cross_entropy(logits[has], gold[has]) if has.any() else logits.sum() * 0.0
            out.update({"L_pg": pg, "L_intent": l_int, "reward": reward.mean(), "rho": rho.mean()})
            twice = twice + l_int + policy_weight * pg
            mem_intent = torch.where(has, gold, logits.argmax(-1).detach())
            memory, mpad = self._with_intent(memory, mpad, mem_intent)
        out["L_twice"] = twice
        lp = self.decoder(b["dec_in"], memory, mpad, H[:, 1:], b["src_ext"], b["src_pad"], b["n_oov"])
        out["L_res"] = F.nll_loss(lp.transpose(1, 2), b["dec_out"], ignore_index=0)
        out["loss"] = delta * out["L_em"] + zeta * twice + eta * out["L_res"]
        return out

    # -- inference -----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def state(self, b: dict, generators: Sequence[torch.Generator] | None = None,
              forced_intents: Sequence[int | None] | None = None) -> dict:
        """Decoder memory + decisions of a batch (eval mode; diffusion noise from the per-row ``generators``)."""
        cfg = self.cfg
        H, Q, pad = self.encode(b)
        logp = self.emotion_logp(Q, b["votes"], per_example=cfg.inference_selection == "example")
        pred = logp.argmax(-1)
        info: dict = {"emotion": pred.tolist()}
        cond = None
        if cfg.use_intent_twice:
            intent_first = self.intent.explore(Q, b["p_intent"])
            cond = self.intent.condition(intent_first)
            info["intent_first"] = intent_first.argmax(-1).tolist()
        memory, mpad = H, pad
        if cfg.use_emu:
            emo_pos = self.ddpm_pos.sample(Q, cond, generators)
            emo_neg = self.ddpm_neg.sample(Q, cond, generators)
            memory, mpad = self._fuse(emo_pos, emo_neg, H, pad)
        if cfg.use_intent_twice:
            state = masked_mean(memory, ~mpad) + cond
            twice = self.intent.pi(state, self.refer_mask[pred]).argmax(-1)
            final = self.intent.correct(state, twice).argmax(-1)
            if forced_intents is not None:
                final = torch.tensor([f if f is not None else int(x) for f, x in zip(forced_intents, final)])
            info["intent_twice"], info["intent"] = twice.tolist(), final.tolist()
            memory, mpad = self._with_intent(memory, mpad, final)
        return {"memory": memory, "memory_pad": mpad, "H_src": H[:, 1:], "src_ext": b["src_ext"],
                "src_pad": b["src_pad"], "n_oov": b["n_oov"], "info": info}

    def next_logprobs(self, st: dict, dec_in: torch.Tensor) -> torch.Tensor:
        return self.decoder(dec_in, st["memory"], st["memory_pad"], st["H_src"], st["src_ext"], st["src_pad"],
                            st["n_oov"])

