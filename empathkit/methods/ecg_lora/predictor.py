"""Pluggable emotion predictors for ECG-LoRA when the emotion label is unknown (chat) or when evaluation is asked to
use predicted labels. A predictor is any callable ``list[list[str]] (context turns per item) -> list[str | None]``
returning ED labels (None = could not tell)."""

from __future__ import annotations

import logging
from typing import Callable, Sequence

log = logging.getLogger(__name__)

EmotionPredictor = Callable[[Sequence[Sequence[str]]], list]


def classifier_predictor() -> EmotionPredictor | None:
    """The trained ``emotion`` classifier (``empathkit classifiers train emotion``) as a predictor, or None."""
    try:
        from empathkit.classifiers import load_classifier
        from empathkit.classifiers.data import context_inputs
    except ImportError:
        return None
    try:
        clf = load_classifier("emotion", required=False)
    except Exception as e:  # noqa: BLE001 — a broken/missing classifier must not break chat
        log.warning("emotion classifier unavailable (%s)", e)
        return None
    if clf is None:
        return None

    def predict(contexts: Sequence[Sequence[str]]) -> list:
        return [lab for lab, _ in clf.predict(context_inputs(clf, contexts))]

    return predict
