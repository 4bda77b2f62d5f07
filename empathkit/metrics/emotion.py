"""Emotion metrics: Acc_emo, EA-F1 and EC (ECG-LoRA appendix), on empathkit's own GoEmotions / ED classifiers.

- ``acc-emo``  accuracy of the emotion a model predicts for the context (``extra.predicted_emotion`` of our
               predictions, e.g. ECG-LoRA / ReflectDiffu / REG heads) against the gold ED emotion; skipped when the
               system predicts no emotion.
- ``ea-f1``    GoEmotions labels of the reference and of the response (multi-label, probability ≥ 0.3, ``neutral``
               when none passes), macro F1 with the reference as ground truth (scikit-learn
               ``f1_score(average="macro", zero_division=0)`` on ``MultiLabelBinarizer`` rows; columns = labels that
               occur in references or responses, ``label_set="all"``: all 28).
- ``ec``       cosine of the NRC VAD vectors of the gold ED emotion and the response's top GoEmotions label, clamped
               to [0, 1], averaged. VAD = the label word's own lexicon entry (``anticipating`` → ``anticipation``,
               the only ED label missing from both lexicon versions). Default lexicon NRC VAD v2.1 ([-1, 1], the
               version ECG-LoRA cites; the clamp matters there); ``ec-v1`` uses the 2018 v1 lexicon ([0, 1], all
               cosines positive).

The classifiers come from ``resources.classifier(kind)`` (``empathkit classifiers train``; a Hub id when configured
under ``resources.classifiers``); a missing classifier raises ResourceMissing, so the suite skips the metric.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from empathkit.errors import ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric

EA_THRESHOLD = 0.3
VAD_FALLBACK = {"anticipating": "anticipation"}  # ED label → lexicon word when the label itself is missing


def _res(resources):
    from empathkit.metrics.resources import as_resources

    return as_resources(resources)


def _classifier(resources, kind: str, source: str | None = None):
    if source:
        from empathkit.classifiers import load_classifier

        return load_classifier(kind, source)
    return _res(resources).classifier(kind)


# ---------------------------------------------------------------------------------------------------- Acc_emo

def _predicted_emotions(batch: Batch, key: str | None) -> list[Any]:
    keys = [key] if key else ["predicted_emotion", "predicted_emotions", "pred_emotion"]
    for k in keys:
        v = batch.extra.get(k)
        if v is not None and any(x not in (None, "") for x in v):
            return list(v)
    raise ResourceMissing("acc-emo needs the emotion the system predicted for each context (a 'predicted_emotion' "
                          "field in the predictions / extra); this system predicts none")


@register_metric("acc-emo", family="emotion", description="accuracy of the system's predicted context emotion vs the gold ED emotion")
def acc_emo(batch: Batch, resources=None, key: str | None = None) -> MetricResult:
    pred = _predicted_emotions(batch, key)
    per: list[float] = []
    for p, g in zip(pred, batch.emotions):
        if p in (None, "") or g in (None, ""):
            per.append(math.nan)
        else:
            per.append(float(str(p).strip().lower() == str(g).strip().lower()))
    valid = [x for x in per if not math.isnan(x)]
    if not valid:
        raise ResourceMissing("acc-emo: no example has both a predicted and a gold emotion")
    return MetricResult("acc-emo", {"acc-emo": float(np.mean(valid))}, {"acc-emo": per},
                        {"n_scored": len(valid), "n": len(per)})


# ---------------------------------------------------------------------------------------------------- EA-F1

def ea_f1_from_labels(ref_labels: Sequence[Sequence[str]], hyp_labels: Sequence[Sequence[str]], labels: Sequence[str],
                      average: str = "macro", label_set: str = "observed") -> float:
    """F1 between label sets, references as ground truth (scikit-learn, zero_division=0).

    ``label_set="observed"``: the binarizer is fitted on the labels that occur in references or responses (a
    ``MultiLabelBinarizer().fit(...)`` on the data, so a label nobody used does not add a 0 to the macro mean);
    ``"all"``: every classifier label is a column. On a full test set both agree when all labels occur."""
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    if label_set == "observed":
        seen = {lab for row in list(ref_labels) + list(hyp_labels) for lab in row}
        classes = [lab for lab in labels if lab in seen] + sorted(seen - set(labels))
    elif label_set == "all":
        classes = list(labels)
    else:
        raise ValueError(f"label_set must be 'observed' or 'all', got {label_set!r}")
    mlb = MultiLabelBinarizer(classes=classes)
    y_true = mlb.fit_transform(ref_labels)
    y_pred = mlb.transform(hyp_labels)
    return float(f1_score(y_true, y_pred, average=average, zero_division=0))


def _describe(clf) -> str:
    path = getattr(clf, "path", None)
    cfg = getattr(clf, "config", None)
    return str(path or getattr(cfg, "encoder", None) or type(clf).__name__)


def _set_f1(a: Sequence[str], b: Sequence[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    tp = len(sa & sb)
    return 2 * tp / (len(sa) + len(sb)) if (sa or sb) else 0.0


@register_metric("ea-f1", family="emotion",
                 description="macro F1 of GoEmotions labels (p>=0.3, neutral fallback) of response vs reference (ECG-LoRA)")
def ea_f1(batch: Batch, resources=None, threshold: float = EA_THRESHOLD, average: str = "macro",
          fallback: str = "neutral", classifier: str | None = None, batch_size: int = 64,
          label_set: str = "observed") -> MetricResult:
    clf = _classifier(resources, "goemotions", classifier)
    ref = clf.predict_labels(list(batch.references), threshold, fallback, batch_size=batch_size)
    hyp = clf.predict_labels(list(batch.hypotheses), threshold, fallback, batch_size=batch_size)
    score = ea_f1_from_labels(ref, hyp, clf.labels, average, label_set)
    per = [_set_f1(r, h) for r, h in zip(ref, hyp)]
    return MetricResult("ea-f1", {"ea-f1": score}, {"ea-f1-example": per},
                        {"threshold": threshold, "average": average, "fallback": fallback, "label_set": label_set,
                         "classifier": _describe(clf),
                         "per_example": "set F1 of the two label sets (the aggregate is the corpus macro F1)"})


# ---------------------------------------------------------------------------------------------------- EC

def _vad_path(resources, version: str, path: str | None):
    if path:
        return path
    r = _res(resources)
    if version == "v1":
        return str(r.data_root() / "nrc_vad" / "v1_2018" / "NRC-VAD-Lexicon.txt")
    return str(r.vad_path())


def label_vad(label: str, lexicon: dict) -> np.ndarray:
    lab = label.strip().lower()
    word = lab if lab in lexicon else VAD_FALLBACK.get(lab, lab)
    if word not in lexicon:
        raise ResourceMissing(f"emotion label '{label}' has no entry in the VAD lexicon")
    return np.asarray(lexicon[word], dtype=float)


def clamped_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """``1 - scipy.spatial.distance.cosine(a, b)`` clamped to [0, 1] (0 when a vector is all zeros)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(min(1.0, max(0.0, float(a @ b) / (na * nb))))


def _ec(batch: Batch, resources, version: str, vad_path: str | None, classifier_kind: str, classifier: str | None,
        batch_size: int, name: str) -> MetricResult:
    from empathkit.data.emotions import load_vad_lexicon

    if all(e in (None, "") for e in batch.emotions):
        raise ResourceMissing(f"{name} needs the gold emotion of each example (the 'emotion' field)")
    lex = load_vad_lexicon(_vad_path(resources, version, vad_path))
    clf = _classifier(resources, classifier_kind, classifier)
    top = clf.predict(list(batch.hypotheses), batch_size=batch_size)
    per: list[float] = []
    for (lab, _), gold in zip(top, batch.emotions):
        if gold in (None, ""):
            per.append(math.nan)
            continue
        per.append(clamped_cosine(label_vad(str(gold), lex), label_vad(lab, lex)))
    valid = [x for x in per if not math.isnan(x)]
    return MetricResult(name, {name: float(np.mean(valid)) if valid else math.nan}, {name: per},
                        {"vad_version": version, "vad_lexicon": _vad_path(resources, version, vad_path),
                         "classifier": classifier_kind, "n_scored": len(valid),
                         "label_mapping": "label word's own lexicon entry; anticipating -> anticipation"})


@register_metric("ec", family="emotion",
                 description="cosine of NRC VAD v2.1 vectors of gold emotion and response's top GoEmotions label, clamped [0,1] (ECG-LoRA)")
def ec(batch: Batch, resources=None, vad_version: str = "v2.1", vad_path: str | None = None,
       classifier_kind: str = "goemotions", classifier: str | None = None, batch_size: int = 64) -> MetricResult:
    return _ec(batch, resources, vad_version, vad_path, classifier_kind, classifier, batch_size, "ec")


@register_metric("ec-v1", family="emotion",
                 description="EC with the NRC VAD v1 (2018, [0,1]) lexicon")
def ec_v1(batch: Batch, resources=None, vad_path: str | None = None, classifier_kind: str = "goemotions",
          classifier: str | None = None, batch_size: int = 64) -> MetricResult:
    return _ec(batch, resources, "v1", vad_path, classifier_kind, classifier, batch_size, "ec-v1")
