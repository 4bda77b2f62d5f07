"""Test doubles for the serving tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import threading

from empathkit.methods.base import Generator


class StubEmotionClassifier:
    """Stands in for empathkit.classifiers' emotion classifier: 'joyful' when the text says happy, else 'sad'."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def predict(self, texts):
        self.calls.append(list(texts))
        return [("joyful", 0.91) if "happy" in t.lower() else ("sad", 0.87) for t in texts]


class RecordingGenerator(Generator):
    """Wraps a generator and records every ``chat`` call; ``hold`` blocks calls until released (queue tests)."""

    name = "recording"

    def __init__(self, inner: Generator, hold: bool = False):
        super().__init__(inner.model, inner.tokenizer, inner.system_prompt, default_settings=inner.default_settings)
        self.inner = inner
        self.calls: list[dict] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold:
            self.release.set()

    def chat(self, conversations, settings=None, emotions=None, gates=None, progress=False):
        self.calls.append({"n": len(conversations), "emotions": list(emotions or []),
                           "gates": list(gates) if gates is not None else None, "settings": settings})
        self.entered.set()
        self.release.wait(timeout=60)
        return self.inner.chat(conversations, settings, emotions=emotions, gates=gates)
