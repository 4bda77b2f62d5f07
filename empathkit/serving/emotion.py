"""Emotion of the conversation for chat / serve: re-exported from :mod:`empathkit.classifiers.detect`, the one
detection path (serving, the terminal chat and the ECG-LoRA predictor share it).

``EmotionDetector.detect([conversation_context(messages)])`` scores the whole conversation (user and assistant
turns, oldest first) in the classifier's recorded input convention; without a trained classifier every guess is
``"none"`` and chat / serve keep working. Any object with ``predict(texts) -> list[(label, prob)]`` can stand in
for the classifier.
"""

from __future__ import annotations

from typing import Sequence

from empathkit.classifiers.detect import NONE, EmotionDetector, EmotionGuess, conversation_context, detect_emotions


def last_user_text(messages: Sequence[dict[str, str]]) -> str:
    """The latest user message. Transitional: only the old emotion call sites in ``serving/batcher.py`` and
    ``serving/server.py`` import it (the safety layer does not); delete it once they use ``conversation_context``."""
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content") or ""
    return ""


__all__ = ["NONE", "EmotionDetector", "EmotionGuess", "conversation_context", "detect_emotions", "last_user_text"]
