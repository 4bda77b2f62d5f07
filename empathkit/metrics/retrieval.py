"""Retrieval metrics: ``acc-emo-exemplar`` — the emotion a retrieval-augmented system's exemplars imply, scored
against the gold ED emotion (REG's ``Acc_emo``; card ``docs/metrics/acc-emo-exemplar.md``).

Per example: the exemplars recorded with the prediction — ED labels ``extra.exemplar_emotions`` and retrieval
scores ``extra.exemplar_scores`` (what REG's generators write into ``Reply.info`` → ``Prediction.extra``), or a list
of exemplar objects ``extra.exemplars`` / ``annotations.exemplars`` each with ``attributes.emotion`` (or
``emotion``) and ``score`` — vote by :func:`weighted_vote`; the example scores 1 when the vote equals the gold
emotion. Examples without labelled exemplars or without a gold emotion are left out (``n_scored``); a system that
records no exemplar labels at all raises ``ResourceMissing`` (the suite skips the metric).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from empathkit.errors import ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric


def weighted_vote(labels: Sequence[str | None], scores: Sequence[float] | None = None) -> str | None:
    """The label with the largest summed weight ``max(score, 0)`` among labelled exemplars (ranked best first).

    All weights 0 (or no scores) → each exemplar counts 1 (plain majority). Ties go to the label of the
    highest-scoring exemplar among the tied ones, then the earlier one. ``None`` when no exemplar has a label."""
    sc = list(scores) if scores is not None else [0.0] * len(labels)
    items = [(i, str(lab), float(s or 0.0)) for i, (lab, s) in enumerate(zip(labels, sc)) if lab not in (None, "")]
    if not items:
        return None
    weights = [max(s, 0.0) for _, _, s in items]
    if sum(weights) <= 0:
        weights = [1.0] * len(items)
    total: dict[str, float] = {}
    best: dict[str, tuple[float, int]] = {}
    for (i, lab, s), w in zip(items, weights):
        total[lab] = total.get(lab, 0.0) + w
        best[lab] = max(best.get(lab, (s, -i)), (s, -i))
    return max(total, key=lambda lab: (round(total[lab], 12), best[lab]))


def _from_objects(objs: Any) -> tuple[list, list] | None:
    if not isinstance(objs, (list, tuple)) or not objs or not all(isinstance(o, dict) for o in objs):
        return None
    labels = [(o.get("attributes") or {}).get("emotion") or o.get("emotion") for o in objs]
    return labels, [float(o.get("score") or 0.0) for o in objs]


def _exemplar_rows(batch: Batch) -> list[tuple[list, list] | None]:
    ex = batch.extra
    n = len(batch.hypotheses)
    emos, scores = ex.get("exemplar_emotions"), ex.get("exemplar_scores")
    objs, anns = ex.get("exemplars"), ex.get("annotations")
    out: list[tuple[list, list] | None] = []
    for i in range(n):
        row = None
        if emos is not None and emos[i]:
            s = scores[i] if scores is not None and scores[i] is not None else None
            row = (list(emos[i]), list(s) if s is not None else None)
        if row is None and objs is not None:
            row = _from_objects(objs[i])
        if row is None and anns is not None and isinstance(anns[i], dict):
            row = _from_objects(anns[i].get("exemplars"))
        out.append(row)
    return out


@register_metric("acc-emo-exemplar", family="retrieval",
                 description="accuracy of the similarity-weighted ED-label vote of the retrieved exemplars vs the "
                             "gold ED emotion (REG's Acc_emo)")
def acc_emo_exemplar(batch: Batch, resources=None) -> MetricResult:
    rows = _exemplar_rows(batch)
    per: list[float] = []
    for row, gold in zip(rows, batch.emotions):
        vote = weighted_vote(*row) if row else None
        per.append(math.nan if vote is None or gold in (None, "") else
                   float(vote.strip().lower() == str(gold).strip().lower()))
    valid = [x for x in per if not math.isnan(x)]
    if not any(r for r in rows):
        raise ResourceMissing("acc-emo-exemplar needs the ED labels of each prediction's retrieved exemplars "
                              "(extra.exemplar_emotions, or exemplars with attributes.emotion); this system "
                              "records none")
    if not valid:
        raise ResourceMissing("acc-emo-exemplar: no example has both labelled exemplars and a gold emotion")
    return MetricResult("acc-emo-exemplar", {"acc-emo-exemplar": float(np.mean(valid))},
                        {"acc-emo-exemplar": per}, {"n_scored": len(valid), "n": len(per), "vote": "max(score,0)"})
