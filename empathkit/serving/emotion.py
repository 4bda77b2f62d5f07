"""Emotion of the user's turn for chat / serve: a thin, pluggable adapter over an emotion classifier.

Any object with ``predict(texts) -> list[(label, prob)]`` works (the default comes from
``empathkit.classifiers.load_classifier("emotion")``). When no classifier is trained or installed the detector is
*unavailable* and every turn reports ``"none"``: chat and serve keep working.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Sequence

log = logging.getLogger(__name__)

NONE = "none"


class EmotionDetector:
    def __init__(self, classifier: Any | None = None, name: str = "emotion"):
        self.classifier = classifier
        self.name = name
        self._lock = threading.Lock()  # classifiers are not guaranteed thread-safe; detection is cheap

    @property
    def available(self) -> bool:
        return self.classifier is not None

    @classmethod
    def load(cls, name: str = "emotion") -> "EmotionDetector":
        """Load ``empathkit.classifiers.load_classifier(name)``; never raises (unavailable → reports "none")."""
        from empathkit.errors import EmpathkitError

        try:
            from empathkit.classifiers import load_classifier

            clf = load_classifier(name)
        except (ImportError, AttributeError) as e:
            log.info("emotion classifier unavailable (%s); detected emotion will be 'none'", e)
            clf = None
        except EmpathkitError as e:  # ResourceMissing (not trained), ConfigError (unknown kind)
            log.info("emotion classifier %r not available (%s); detected emotion will be 'none'", name, e)
            clf = None
        return cls(clf, name)

    def detect(self, texts: Sequence[str]) -> list[tuple[str, float | None]]:
        texts = list(texts)
        if not texts:
            return []
        if self.classifier is None:
            return [(NONE, None) for _ in texts]
        try:
            with self._lock:
                preds = self.classifier.predict(texts)
            return [(str(label), float(prob)) for label, prob in preds]
        except Exception as e:  # a broken classifier must not take the chat down
            log.warning("emotion classifier failed (%s); reporting 'none'", e)
            return [(NONE, None) for _ in texts]


def last_user_text(messages: Sequence[dict[str, str]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content") or ""
    return ""
