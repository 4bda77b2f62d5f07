"""Serving fixtures: a tiny random Llama behind the prompt baseline, a stub emotion classifier, a live server."""

from __future__ import annotations

import pytest
from serving_helpers import RecordingGenerator, StubEmotionClassifier

from empathkit.serving.emotion import EmotionDetector


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
