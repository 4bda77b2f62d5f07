"""Pluggable emotion predictors for ECG-LoRA when the emotion label is unknown (chat) or when evaluation is asked to
use predicted labels. A predictor is any callable ``list[list[str]] (context turns per item) -> list[str | None]``
returning ED labels (None = could not tell)."""

from __future__ import annotations

from typing import Callable, Sequence

EmotionPredictor = Callable[[Sequence[Sequence[str]]], list]


def classifier_predictor(name: str = "emotion", source: str | None = None) -> EmotionPredictor | None:
    """The trained ``emotion`` classifier (``empathkit classifiers train emotion``) as a predictor through
    :class:`~empathkit.classifiers.detect.EmotionDetector` (whole context, the classifier's recorded input
    convention; a failing prediction gives None labels), or None when no classifier is available."""
    try:
        from empathkit.classifiers.detect import EmotionDetector
    except ImportError:  # the classifier extras are not installed: ECG-LoRA falls back to the mean gate
        return None
    detector = EmotionDetector.load(name, source)
    if not detector.available:
        return None

    def predict(contexts: Sequence[Sequence[str]]) -> list[str | None]:
        return [None if g.is_none else g.label for g in detector.detect(contexts)]

    return predict
