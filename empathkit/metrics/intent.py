"""Intent accuracy (ReflectDiffu's Acc_intent) against EmpatheticIntents labels.

The response's intent is predicted by empathkit's ``intent`` classifier (8 EmpatheticIntents intents + neutral,
trained on the lexically-extended intent data). Gold labels:

- ``acc-intent``      the EmpatheticIntents annotation of the **reference** listener turn, aligned through the
                      example id ``<conv_id>#<utterance index>`` with ``empatheticdialogues_annotated`` (see
                      :mod:`empathkit.classifiers.intent_align`). Examples whose id does not align, or whose reference
                      was annotated with an emotion instead of an intent, are left out (``coverage`` in the info).
                      Raises ResourceMissing (→ skipped) when no example aligns (outputs not from ED).
- ``acc-intent-ref``  the intent the same classifier predicts for the reference (no alignment needed; works for any
                      system's outputs, e.g. CSV files without ED ids).
"""

from __future__ import annotations

import math

import numpy as np

from empathkit.errors import ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric


def _clf(resources, source):
    if source:
        from empathkit.classifiers import load_classifier

        return load_classifier("intent", source)
    from empathkit.metrics.resources import as_resources

    return as_resources(resources).classifier("intent")


def _data_root(resources):
    from empathkit.metrics.resources import as_resources

    try:
        return str(as_resources(resources).data_root())
    except ResourceMissing:
        return None


@register_metric("acc-intent", family="intent",
                 description="accuracy of the response's predicted intent vs the EmpatheticIntents label of the reference turn")
def acc_intent(batch: Batch, resources=None, classifier: str | None = None, batch_size: int = 64) -> MetricResult:
    from empathkit.classifiers.intent_align import reference_intents

    gold = reference_intents(list(batch.ids), _data_root(resources))
    keep = [i for i, g in enumerate(gold) if g is not None]
    if not keep:
        raise ResourceMissing("acc-intent: no example id aligns with an EmpatheticIntents-annotated ED listener turn "
                              "(ids must look like '<conv_id>#<turn index>'); use acc-intent-ref instead")
    clf = _clf(resources, classifier)
    pred = clf.predict([batch.hypotheses[i] for i in keep], batch_size=batch_size)
    per = [math.nan] * len(gold)
    for i, (lab, _) in zip(keep, pred):
        per[i] = float(lab == gold[i])
    vals = [per[i] for i in keep]
    return MetricResult("acc-intent", {"acc-intent": float(np.mean(vals))}, {"acc-intent": per},
                        {"n_scored": len(keep), "coverage": len(keep) / len(gold),
                         "gold": "EmpatheticIntents annotation of the reference listener turn"})


@register_metric("acc-intent-ref", family="intent",
                 description="agreement of the predicted intents of response and reference")
def acc_intent_ref(batch: Batch, resources=None, classifier: str | None = None, batch_size: int = 64) -> MetricResult:
    clf = _clf(resources, classifier)
    hyp = clf.predict(list(batch.hypotheses), batch_size=batch_size)
    ref = clf.predict(list(batch.references), batch_size=batch_size)
    per = [float(h == r) for (h, _), (r, _) in zip(hyp, ref)]
    return MetricResult("acc-intent-ref", {"acc-intent-ref": float(np.mean(per)) if per else math.nan},
                        {"acc-intent-ref": per}, {"gold": "classifier's prediction on the reference"})
