"""Emotion of the conversation for chat / serve: re-exported from :mod:`empathkit.classifiers.detect`, the one
detection path (serving, the terminal chat and the ECG-LoRA predictor share it).

``EmotionDetector.detect([conversation_context(messages)])`` scores the whole conversation (user and assistant
turns, oldest first) in the classifier's recorded input convention; without a trained classifier every guess is
``"none"`` and chat / serve keep working. Any object with ``predict(texts) -> list[(label, prob)]`` can stand in
for the classifier.
"""

from __future__ import annotations

from empathkit.classifiers.detect import NONE, EmotionDetector, EmotionGuess, conversation_context, detect_emotions


__all__ = ["NONE", "EmotionDetector", "EmotionGuess", "conversation_context", "detect_emotions"]
