"""REG's retriever distillation and joint objective (Sec. 3.2.3–3.2.5, Eq. 3–5 and 7): the maths, as pure functions
and small torch modules, independent of how candidates are retrieved (``reg/index.py``) or decoded.

Pieces, in the order a stage-2 training step uses them::

    aug = CandidateAugmenter(corpus, k=0.1, seed=0)                  # Eq. 5: random corpus items, never the query's
    cands, replaced = aug(candidates, query_dialogue_id)             #         own conversation
    cache = DecodeCache.open(run_dir, g1="runs/g1", settings=...)     # G1 decodes of (query, exemplar), once, on disk
    texts = cache.fill(pairs, pair_decoder(g1, queries, exemplars, settings))
    F = Utility({"rouge-l": 1, "bleu": 1, "f1": 1}).matrix(decodes, golds)   # F(r, Dec(G1, (t_i, A_ti, X, A_x)))
    P = distillation_target(F, tau)                                   # Eq. 3: softmax(F / τ)
    L_R = retrieval_loss("kl-fid", P, S_q, tau_r)                     # Eq. 4 (two readings, below)
    L = joint_loss(L_R, L_G2, alpha=0.2)                              # Eq. 7

Values the paper leaves open (K, τ, τ_r, k; see ``../shared/design/reg-reflectdiffu-notes.md``) are named options of
:class:`DistillConfig`; kl-fid vs kl-paper, τ and k were measured on CPU (docs/methods/reg.md, *Stage 2*: kl-fid
ahead within noise, τ / k differences unresolved), τ_r is unmeasured; α = 0.2 is the paper's.

The utility metrics F live in :mod:`empathkit.methods.reg.utility`, the G1-decode cache in
:mod:`empathkit.methods.reg.decodes`.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Hashable, Literal, Sequence, TypeVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, Field

from empathkit.errors import ConfigError
from empathkit.methods.reg.utility import Utility
from empathkit.types import Exemplar

T = TypeVar("T")

ALPHA = 0.2  # Eq. 7, stated by the paper


# ====================================================================================== target and losses (Eq. 3, 4)
def _check(target: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None) -> None:
    if target.shape != scores.shape or target.dim() != 2:
        raise ValueError(f"target {tuple(target.shape)} and scores {tuple(scores.shape)} must both be (B, K)")
    if mask is not None and mask.shape != scores.shape:
        raise ValueError(f"mask {tuple(mask.shape)} must be (B, K) like the scores")


def distillation_target(utilities: torch.Tensor, tau: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 3: ``p_i = exp(F_i / τ) / Σ_j exp(F_j / τ)`` over each row's K candidates (``mask``: False = padding,
    probability 0). No gradient flows into the target (G1's decodes are fixed)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    logits = utilities.detach().float() / tau
    if mask is not None:
        logits = logits.masked_fill(~mask.bool(), float("-inf"))
    return torch.softmax(logits, dim=-1)


def kl_paper(target: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 4 exactly as written: ``L_R = KL(P ‖ σ(S_q))`` with σ the sigmoid, i.e. per query

        Σ_i p_i · log(p_i / σ(s_i))   (0 · log 0 = 0),   averaged over the batch,

    which is what ``torch.nn.KLDivLoss(reduction="batchmean")(F.logsigmoid(S), P)`` computes (computed here with
    ``logsigmoid`` for stability, masked entries contributing 0).

    σ(S) is not a distribution (the σ(s_i) need not sum to 1), so this is not a KL divergence: it can be negative,
    and its gradient ``∂L/∂s_i = −p_i · (1 − σ(s_i))`` is negative for every candidate — it raises all scores,
    those with a higher target probability faster, and stops ranking once σ saturates (the infimum, −H(P), is
    reached as every s_i → +∞). It is kept as the paper's literal objective; :func:`kl_fid` is the normalised
    form FiD / Atlas use. (A third reading, the generalised KL of positive measures Σ p log(p/q) − p + q, has its
    minimum at σ(s_i) = p_i; it is not implemented.)"""
    _check(target, scores, mask)
    log_q = F.logsigmoid(scores.float())
    elem = torch.xlogy(target, target) - target * log_q
    if mask is not None:
        elem = elem.masked_fill(~mask.bool(), 0.0)
    return elem.sum() / scores.shape[0]


def kl_fid(target: torch.Tensor, scores: torch.Tensor, tau_r: float = 1.0,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 4 read as FiD / Atlas distil a retriever: ``KL(P ‖ softmax(S_q / τ_r))`` per query, averaged over the
    batch — ``torch.nn.KLDivLoss(reduction="batchmean")(log_softmax(S / τ_r), P)`` on log-probabilities. A proper
    KL divergence (≥ 0, zero iff the retriever's distribution over the K candidates equals P). Masked candidates
    are left out of the softmax and contribute 0."""
    _check(target, scores, mask)
    if tau_r <= 0:
        raise ValueError(f"tau_r must be > 0, got {tau_r}")
    logits = scores.float() / tau_r
    if mask is not None:
        m = mask.bool()
        log_q = torch.log_softmax(logits.masked_fill(~m, float("-inf")), dim=-1).masked_fill(~m, 0.0)
    else:
        log_q = torch.log_softmax(logits, dim=-1)
    return torch.nn.KLDivLoss(reduction="batchmean")(log_q, target)


LossName = Literal["kl-paper", "kl-fid"]
LOSSES = ("kl-paper", "kl-fid")


def retrieval_loss(name: str, target: torch.Tensor, scores: torch.Tensor, tau_r: float = 1.0,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """``kl-paper`` (:func:`kl_paper`; ``tau_r`` unused) or ``kl-fid`` (:func:`kl_fid`)."""
    if name == "kl-paper":
        return kl_paper(target, scores, mask)
    if name == "kl-fid":
        return kl_fid(target, scores, tau_r, mask)
    raise ConfigError(f"unknown REG retrieval loss {name!r}; known: {', '.join(LOSSES)}")


def similarity_scores(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """``S_q``: dot products of query embeddings ``(B, d)`` with their candidates' embeddings ``(B, K, d)`` →
    ``(B, K)`` (Contriever's similarity)."""
    return torch.einsum("bd,bkd->bk", queries, candidates)


class RetrieverDistillLoss(torch.nn.Module):
    """Eq. 3 + Eq. 4: utilities ``F`` (B, K) and retriever scores ``S_q`` (B, K) → ``L_R`` (a scalar).
    ``loss``: ``kl-paper`` or ``kl-fid`` (:data:`LOSSES`); ``tau`` the target temperature, ``tau_r`` the score
    temperature of ``kl-fid``."""

    def __init__(self, loss: str = "kl-fid", tau: float = 0.1, tau_r: float = 0.1):
        super().__init__()
        if loss not in LOSSES:
            raise ConfigError(f"unknown REG retrieval loss {loss!r}; known: {', '.join(LOSSES)}")
        self.loss, self.tau, self.tau_r = loss, tau, tau_r

    def forward(self, utilities: torch.Tensor, scores: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        target = distillation_target(utilities, self.tau, mask).to(scores.device)
        return retrieval_loss(self.loss, target, scores, self.tau_r, mask)

    def extra_repr(self) -> str:
        return f"loss={self.loss}, tau={self.tau}, tau_r={self.tau_r}"


# ============================================================================================== joint loss (Eq. 7)
def joint_loss(retrieval: torch.Tensor, generation: torch.Tensor, alpha: float = ALPHA) -> torch.Tensor:
    """Eq. 7: ``L = α · L_R^aug + (1 − α) · L_G2`` (α = 0.2 in the paper: generation first, retrieval kept stable)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return alpha * retrieval + (1.0 - alpha) * generation


class JointLoss(torch.nn.Module):
    """Eq. 7 as a module (``alpha`` = 0.2 by default)."""

    def __init__(self, alpha: float = ALPHA):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha

    def forward(self, retrieval: torch.Tensor, generation: torch.Tensor) -> torch.Tensor:
        return joint_loss(retrieval, generation, self.alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


# ================================================================= Retrieval Candidate Augmentation (Eq. 5)
def conversation_id(item: Any) -> str:
    """The conversation a candidate comes from: an :class:`Exemplar`'s ``dialogue_id`` attribute, else the part of
    its id before ``#`` (example ids are ``<dialogue id>#<turn>``); a plain string id likewise."""
    if isinstance(item, Exemplar):
        return str(item.attributes.get("dialogue_id") or item.id.split("#", 1)[0])
    return str(item).split("#", 1)[0]


def _item_key(item: Any) -> Hashable:
    return item.id if isinstance(item, Exemplar) else item


class CandidateAugmenter:
    """Eq. 5: each candidate t_i is replaced, with probability ``k``, by ``Random(T)`` — a corpus item drawn
    uniformly — during retriever training.

    - Seeded and reproducible: two ``random.Random`` streams derived from ``seed``, one for the replace / keep
      decisions (so which positions are replaced depends on ``seed`` and the call sequence only), one for the
      replacement draws. The same seed and the same calls give the same candidates.
    - A replacement never comes from the query's own conversation (:func:`conversation_id`) and is never already
      in the row (no duplicate passages); if nothing in the corpus qualifies the candidate is kept.
    - ``k = 0`` returns the candidates unchanged (the ``w/o RCA`` ablation).
    """

    def __init__(self, corpus: Sequence[T], k: float, seed: int = 0,
                 conversation_of: Callable[[Any], str] = conversation_id, max_tries: int = 64):
        if not 0.0 <= k <= 1.0:
            raise ValueError(f"augmentation probability k must be in [0, 1], got {k}")
        if k > 0 and not corpus:
            raise ValueError("an empty corpus cannot supply random candidates")
        self.corpus, self.k, self.seed = corpus, float(k), seed
        self.conversation_of, self.max_tries = conversation_of, max_tries
        self._decide = random.Random(f"reg-rca-decide-{seed}")
        self._draw = random.Random(f"reg-rca-draw-{seed}")

    def _random_item(self, query_conversation: str | None, taken: set) -> Any | None:
        def ok(item) -> bool:
            return _item_key(item) not in taken and (query_conversation is None or
                                                     self.conversation_of(item) != query_conversation)

        for _ in range(self.max_tries):  # rejection sampling: the corpus is large, exclusions are few
            item = self.corpus[self._draw.randrange(len(self.corpus))]
            if ok(item):
                return item
        pool = [x for x in self.corpus if ok(x)]
        return self._draw.choice(pool) if pool else None

    def __call__(self, candidates: Sequence[T], query_conversation: str | None) -> tuple[list[T], list[bool]]:
        """``(augmented candidates, replaced flags)`` for one query (its conversation id excludes its own turns)."""
        out = list(candidates)
        flags = [False] * len(out)
        taken = {_item_key(c) for c in out}
        for i in range(len(out)):
            if self._decide.random() >= self.k:
                continue
            new = self._random_item(query_conversation, taken)
            if new is None:
                continue
            out[i], flags[i] = new, True
            taken.add(_item_key(new))
        return out, flags

    def batch(self, candidates: Sequence[Sequence[T]],
              query_conversations: Sequence[str | None]) -> tuple[list[list[T]], list[list[bool]]]:
        rows = [self(c, q) for c, q in zip(candidates, query_conversations, strict=True)]
        return [r[0] for r in rows], [r[1] for r in rows]


# ================================================================================================== config
class DistillConfig(BaseModel):
    """Stage-2 options (the retriever distillation and joint training). Unstated in the paper, provisional until
    measured: ``tau``, ``tau_r``, ``k``, ``loss``. Stated: ``alpha`` = 0.2."""

    model_config = {"extra": "forbid"}

    utility: str | dict[str, float] = Field("reg", description="a preset of UTILITY_PRESETS (reg, rouge-l, "
                                                               "w/o-bleu, w/o-f1, w/o-rouge-l) or {metric: weight}")
    tau: float = Field(0.1, gt=0, description="Eq. 3 target temperature (unstated; provisional)")
    loss: LossName = Field("kl-fid", description="Eq. 4 reading: kl-paper (literal, sigmoid) or kl-fid "
                                                 "(log_softmax, FiD/Atlas); default: measured ahead of kl-paper "
                                                 "within noise, docs/methods/reg.md")
    tau_r: float = Field(0.1, gt=0, description="kl-fid: retriever score temperature (unstated; provisional)")
    k: float = Field(0.1, ge=0, le=1, description="Eq. 5 replacement probability (unstated; 0 = w/o RCA)")
    alpha: float = Field(ALPHA, ge=0, le=1, description="Eq. 7 weight of the retrieval loss (paper: 0.2)")
    seed: int = 0

    def utility_fn(self) -> Utility:
        return Utility(self.utility)

    def retrieval_loss(self) -> RetrieverDistillLoss:
        return RetrieverDistillLoss(self.loss, self.tau, self.tau_r)
