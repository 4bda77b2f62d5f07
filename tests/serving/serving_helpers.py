"""Fixtures and test doubles for the serving tests.

Not a ``conftest.py``: other test modules do ``from conftest import requires_data`` and a second conftest module
in a sub-folder would shadow the top-level one. Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import threading

import pytest

from empathkit.methods.causal import CausalLMGenerator
from empathkit.serving.emotion import EmotionDetector


class StubEmotionClassifier:
    """Stands in for empathkit.classifiers' emotion classifier: 'joyful' when the text says happy, else 'sad'."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def predict(self, texts):
        self.calls.append(list(texts))
        return [("joyful", 0.91) if "happy" in t.lower() else ("sad", 0.87) for t in texts]


class RecordingGenerator(CausalLMGenerator):
    """Wraps a generator and records every ``chat`` call; ``hold`` blocks calls until released (queue tests)."""

    name = "recording"

    def __init__(self, inner: CausalLMGenerator, hold: bool = False):
        super().__init__(inner.model, inner.tokenizer, inner._system, default_settings=inner.default_settings)
        self.inner = inner
        self.calls: list[dict] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold:
            self.release.set()

    def chat(self, conversations, settings=None, controls=None, **kw):
        ctl = list(controls or [])
        gates = [c.gate if c else None for c in ctl]
        self.calls.append({"n": len(conversations), "emotions": [c.emotion if c else None for c in ctl],
                           "gates": gates if any(g is not None for g in gates) else None, "settings": settings,
                           "streamed": kw.get("on_text") is not None})
        self.entered.set()
        self.release.wait(timeout=60)
        return self.inner.chat(conversations, settings, controls, **kw)


@pytest.fixture(scope="session")
def tiny_gen(tiny_model):
    """The prompt baseline on the tiny random Llama; sampling (seeded) so replies are visible random words."""
    from empathkit.methods.prompt import load

    model, tok = tiny_model
    gen = load({"template": "plain"}, model=model, tokenizer=tok)
    gen.default_settings = gen.default_settings.model_copy(
        update={"max_new_tokens": 8, "do_sample": True, "temperature": 1.0, "top_p": 1.0})
    return gen


@pytest.fixture
def stub_detector():
    return EmotionDetector(StubEmotionClassifier())


@pytest.fixture
def recording_gen(tiny_gen):
    return RecordingGenerator(tiny_gen)
