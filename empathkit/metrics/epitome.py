"""EPITOME-based empathy-communication metrics: Emp-F1 (ECG-LoRA / EmpRL) and DIFF-EPITOME (EmPO, Lee et al. 2022).

Three classifiers (``epitome-er`` emotional reactions, ``epitome-ip`` interpretations, ``epitome-ex``
explorations; ``empathkit classifiers train``) give a level 0/1/2 to a (seeker post, response) pair. The seeker
post is the **last turn of the context** (the turn the response answers — in ED always a speaker turn; EmPO's
``diff_epitome.py`` uses this "previous utterance" too); ``seeker="speaker-turns"`` joins all speaker turns
(every other turn counted back from the last) and ``seeker="context"`` the whole context. Inputs are lower-cased
by the classifiers (as in EmPO's scorer).

- ``emp-f1``        per dimension, scikit-learn weighted F1 of the response levels against the reference levels
                    (reference = ground truth); ``emp-f1`` = mean of the three. 0–1 (ECG-LoRA prints ×100).
- ``diff-epitome``  per example and dimension ``(level(response) − level(reference))²``, averaged over examples
                    (``diff-er`` / ``diff-ip`` / ``diff-ex``); ``diff-epitome`` = mean of the three. Lower is better;
                    ``power=1`` gives the absolute-difference variant.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from empathkit.errors import DataError
from empathkit.metrics.base import Batch, MetricResult, register_metric

DIMENSIONS = ("er", "ip", "ex")


def seeker_post(context: Sequence[str], mode: str = "last-turn") -> str:
    ctx = [c for c in context]
    if not ctx:
        return ""
    if mode == "last-turn":
        return ctx[-1]
    if mode == "speaker-turns":
        return " ".join(ctx[::-1][::2][::-1])
    if mode == "context":
        return " ".join(ctx)
    raise DataError(f"unknown seeker mode {mode!r} (last-turn | speaker-turns | context)", field="seeker")


def _classifier(resources, dim: str, sources: dict | None):
    src = (sources or {}).get(dim) or (sources or {}).get(f"epitome-{dim}")
    if src:
        from empathkit.classifiers import load_classifier

        return load_classifier(f"epitome-{dim}", src)
    from empathkit.metrics.resources import as_resources

    return as_resources(resources).classifier(f"epitome-{dim}")


def epitome_levels(batch: Batch, resources=None, seeker: str = "last-turn", classifiers: dict | None = None,
                   batch_size: int = 64) -> dict[str, tuple[list[int], list[int]]]:
    """``dim → (response levels, reference levels)`` for every example."""
    seekers = [seeker_post(c, seeker) for c in batch.contexts]
    out = {}
    for dim in DIMENSIONS:
        clf = _classifier(resources, dim, classifiers)
        hyp = [int(lab) for lab, _ in clf.predict(list(zip(seekers, batch.hypotheses)), batch_size=batch_size)]
        ref = [int(lab) for lab, _ in clf.predict(list(zip(seekers, batch.references)), batch_size=batch_size)]
        out[dim] = (hyp, ref)
    return out


@register_metric("emp-f1", family="epitome",
                 description="weighted F1 of EPITOME levels (ER/IP/EX) of response vs reference, and their mean (ECG-LoRA/EmpRL)")
def emp_f1(batch: Batch, resources=None, seeker: str = "last-turn", classifiers: dict | None = None,
           batch_size: int = 64, scale: float = 1.0) -> MetricResult:
    from sklearn.metrics import f1_score

    levels = epitome_levels(batch, resources, seeker, classifiers, batch_size)
    agg, per = {}, {}
    for dim, (hyp, ref) in levels.items():
        agg[f"emp-f1-{dim}"] = scale * float(f1_score(ref, hyp, labels=[0, 1, 2], average="weighted", zero_division=0))
        per[f"emp-match-{dim}"] = [float(h == r) for h, r in zip(hyp, ref)]
    agg["emp-f1"] = float(np.mean([agg[f"emp-f1-{d}"] for d in DIMENSIONS]))
    dist = {f"{dim}-{side}": np.bincount(v, minlength=3).tolist() for dim, (h, r) in levels.items()
            for side, v in (("hyp", h), ("ref", r))}
    return MetricResult("emp-f1", agg, per, {"seeker": seeker, "average": "weighted", "scale": scale,
                                             "level_counts": dist,
                                             "per_example": "1 when response and reference get the same level"})


@register_metric("diff-epitome", family="epitome", higher_is_better=False,
                 description="mean squared EPITOME level difference response vs reference per dimension, and their mean (EmPO)")
def diff_epitome(batch: Batch, resources=None, seeker: str = "last-turn", classifiers: dict | None = None,
                 batch_size: int = 64, power: int = 2) -> MetricResult:
    levels = epitome_levels(batch, resources, seeker, classifiers, batch_size)
    agg, per = {}, {}
    for dim, (hyp, ref) in levels.items():
        d = [float(abs(h - r) ** power) for h, r in zip(hyp, ref)]
        per[f"diff-{dim}"] = d
        agg[f"diff-{dim}"] = float(np.mean(d)) if d else float("nan")
        agg[f"epitome-{dim}-hyp"] = float(np.mean(hyp)) if hyp else float("nan")
        agg[f"epitome-{dim}-ref"] = float(np.mean(ref)) if ref else float("nan")
    agg["diff-epitome"] = float(np.mean([agg[f"diff-{d}"] for d in DIMENSIONS]))
    per["diff-epitome"] = [float(np.mean(v)) for v in zip(*(per[f"diff-{d}"] for d in DIMENSIONS))]
    return MetricResult("diff-epitome", agg, per, {"seeker": seeker, "power": power})
