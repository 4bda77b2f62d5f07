"""REG's Table 2 ablations as named switches (``train.ablations: [...]``), each a rewrite of the run config that
removes exactly one component; :func:`apply_ablations` runs before training, so the run's saved ``config.yaml`` holds
the effective settings (loading the run needs nothing else).

| switch | removes | config it sets |
|---|---|---|
| ``w/o-ea`` | the emotion attributes everywhere | ``model.mode=semantic``, ``model.attribute_tags=false``, ``model.exemplar_tags=false`` |
| ``w/o-bleu`` / ``w/o-f1`` / ``w/o-rouge-l`` | one metric of the utility F (Eq. 3) | that weight 0 in ``train.retriever.distill.utility`` |
| ``w/o-rca`` | Retrieval Candidate Augmentation (Eq. 5) | ``train.retriever.distill.k=0`` (stage 2 and stage 3) |
| ``g1+rag`` | the token-level target | ``train.retriever.target=g1-likelihood`` (P from G1's likelihood of the gold response given each exemplar) |
| ``scratch`` (``REG_scratch``) | G2 starting from G1 | ``train.g2.init=base`` |
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from empathkit.methods.reg.utility import utility_weights

ALIASES = {"reg_scratch": "scratch", "reg-scratch": "scratch", "w/o ea": "w/o-ea", "wo-ea": "w/o-ea",
           "w/o rca": "w/o-rca", "wo-rca": "w/o-rca", "w/o bleu": "w/o-bleu", "w/o f1": "w/o-f1",
           "w/o rouge-l": "w/o-rouge-l", "g1-rag": "g1+rag"}


def normalise(name: str) -> str:
    n = str(name).strip().lower()
    return ALIASES.get(n, n)


def _section(cfg: dict, *path: str) -> dict:
    d = cfg
    for p in path:
        if not isinstance(d.get(p), dict):
            d[p] = {}
        d = d[p]
    return d


def _no_ea(cfg: dict) -> None:
    _section(cfg, "model").update(mode="semantic", attribute_tags=False, exemplar_tags=False)


def _without(metric: str) -> Callable[[dict], None]:
    def fn(cfg: dict) -> None:
        d = _section(cfg, "train", "retriever", "distill")
        w = dict(utility_weights(d.get("utility", "reg")))
        w[metric] = 0.0
        d["utility"] = w
    return fn


def _no_rca(cfg: dict) -> None:
    _section(cfg, "train", "retriever", "distill")["k"] = 0.0


def _g1_rag(cfg: dict) -> None:
    _section(cfg, "train", "retriever")["target"] = "g1-likelihood"


def _scratch(cfg: dict) -> None:
    _section(cfg, "train", "g2")["init"] = "base"


ABLATIONS: dict[str, Callable[[dict], None]] = {
    "w/o-ea": _no_ea, "w/o-bleu": _without("bleu"), "w/o-f1": _without("f1"), "w/o-rouge-l": _without("rouge-l"),
    "w/o-rca": _no_rca, "g1+rag": _g1_rag, "scratch": _scratch}


def apply_ablations(cfg: dict[str, Any]) -> dict[str, Any]:
    """A copy of the whole run config with ``train.ablations`` applied (idempotent: applying twice changes
    nothing more)."""
    out = copy.deepcopy(cfg)
    for name in (out.get("train") or {}).get("ablations") or []:
        ABLATIONS[normalise(name)](out)
    return out
