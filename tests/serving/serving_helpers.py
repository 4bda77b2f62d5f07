"""Fixtures and test doubles for the serving tests.

Not a ``conftest.py``: other test modules do ``from conftest import requires_data`` and a second conftest module
in a sub-folder would shadow the top-level one. Test modules import the fixtures they use from here.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from empathkit.methods.base import Generator
from empathkit.serving.emotion import EmotionDetector
from empathkit.types import Reply, TokenScore


class StubEmotionClassifier:
    """Stands in for empathkit.classifiers' emotion classifier: 'joyful' when the text says happy, else 'sad'."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def predict(self, texts):
        self.calls.append(list(texts))
        return [("joyful", 0.91) if "happy" in t.lower() else ("sad", 0.87) for t in texts]


def _last_user(conv) -> str:
    return next((m["content"] for m in reversed(conv) if m["role"] == "user"), "")


class RecordingGenerator(Generator):
    """Wraps a generator and records every ``chat`` call (rows, controls, whether it streamed, the replies).

    Only the ``Generator`` interface: no ``model`` / ``tokenizer`` attributes, so serving must not need them.
    ``hold`` blocks calls until ``release`` is set (queue tests); ``step_delay`` sleeps in ``should_stop`` (called
    once per row and decoding step) so a batch takes long enough for a client to hang up; ``info`` is merged into
    every ``Reply.info`` (what e.g. ECG-LoRA reports)."""

    name = "recording"

    def __init__(self, inner: Generator, hold: bool = False, step_delay: float = 0.0, info: dict | None = None):
        super().__init__(inner.info, inner.default_settings)
        self.inner, self.step_delay, self.extra_info = inner, step_delay, dict(info or {})
        self.calls: list[dict] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        if not hold:
            self.release.set()

    def chat(self, conversations, settings=None, controls=None, *, on_text=None, should_stop=None, **kw):
        ctl = list(controls or [])
        gates = [c.gate if c else None for c in ctl]
        call = {"n": len(conversations), "emotions": [c.emotion if c else None for c in ctl],
                "sources": [c.emotion_source if c else None for c in ctl],
                "gates": gates if any(g is not None for g in gates) else None, "settings": settings,
                "streamed": on_text is not None, "users": [_last_user(c) for c in conversations], "replies": None}
        self.calls.append(call)
        self.entered.set()
        self.release.wait(timeout=60)
        stop = should_stop
        if self.step_delay and should_stop is not None:
            def stop(i):
                time.sleep(self.step_delay)
                return should_stop(i)
        replies = self.inner.chat(conversations, settings, controls, on_text=on_text, should_stop=stop, **kw)
        if self.extra_info:
            replies = [dataclasses.replace(r, info={**r.info, **self.extra_info}) for r in replies]
        call["replies"] = replies
        return replies

    def score(self, examples, controls=None, batch_size=8, progress=False):
        return self.inner.score(examples, controls, batch_size, progress)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class EchoGenerator(Generator):
    """A generator of its own (no model, no tokenizer, like ReflectDiffu): replies "you said: <the last user
    message>" one word per decoding step (a word = a token), streams through ``on_text``, honours ``should_stop`` and
    ``max_new_tokens``, and reports method info (a gate, a predicted emotion, an exemplar)."""

    name = "echo"

    def __init__(self, step_delay: float = 0.0):
        super().__init__()
        self.step_delay = step_delay
        self.calls: list[int] = []

    def chat(self, conversations, settings=None, controls=None, *, on_text=None, should_stop=None, progress=False,
             desc=None):
        from empathkit.types import Exemplar

        s = settings or self.default_settings
        self.calls.append(len(conversations))
        words = [["you", "said:"] + _last_user(c).split() for c in conversations]
        out: list[list[str]] = [[] for _ in conversations]
        finish: list[str | None] = [None] * len(conversations)
        for step in range(s.max_new_tokens):
            for i, ws in enumerate(words):
                if finish[i] is not None:
                    continue
                if step >= len(ws):
                    finish[i] = "stop"
                    continue
                out[i].append(ws[step])
                if on_text is not None:
                    on_text(i, (" " if step else "") + ws[step])
                if should_stop is not None and should_stop(i):
                    finish[i] = "cancelled"
            if all(f is not None for f in finish):
                break
            time.sleep(self.step_delay)
        ex = Exemplar("ed-1", "That sounds hard.", ("I lost my job.",), 0.5)
        return [Reply(" ".join(o), sum(len(m["content"].split()) for m in c), len(o), f or "length",
                      {"gate": 0.42, "predicted_emotion": "sad", "exemplars": (ex,)})
                for c, o, f in zip(conversations, out, finish)]

    def score(self, examples, controls=None, batch_size=8, progress=False):
        return [TokenScore(0.0, 0) for _ in examples]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


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
