"""G-Score parsing and backends (a fake OpenAI-compatible client, the tiny local model) and the NLPCC composite."""

from __future__ import annotations

import math
import sys
import types

import pytest

from empathkit.metrics import METRICS
from empathkit.metrics.base import Batch
from empathkit.metrics.judge import NLPCC_WEIGHTS, parse_scores
from empathkit.metrics.resources import Resources

B = Batch(["I am sorry to hear that.", "Great!"], ["So sorry.", "Congrats!"], contexts=[["My dog died."], ["I won."]])


@pytest.mark.parametrize("text,expect", [
    ('{"relevance": 4, "fluency": 5, "informativeness": 3, "coherence": 4}', (4, 5, 3, 4)),
    ('Sure! ```json\n{"relevance": 2, "fluency": 3, "informativeness": 1, "coherence": 5}\n```', (2, 3, 1, 5)),
    ("Relevance: 4\nFluency - 5\nInformativeness: 2\nCoherence: 3", (4, 5, 2, 3)),
    ("4, 4, 3, 5", (4, 4, 3, 5)),
])
def test_parse_scores_robust(text, expect):
    assert tuple(parse_scores(text).values()) == expect


@pytest.mark.parametrize("text", ["", "I cannot rate this.", '{"relevance": 9, "fluency": 9, "informativeness": 9, "coherence": 9}', "10 20"])
def test_parse_scores_rejects(text):
    assert parse_scores(text) is None


def test_openai_backend_through_a_fake_client(monkeypatch):
    replies = iter(['{"relevance": 5, "fluency": 5, "informativeness": 4, "coherence": 5}', "no idea"])
    seen = {}

    class FakeOpenAI:
        def __init__(self, base_url=None, api_key=None, **kw):
            seen.update(base_url=base_url, api_key=api_key)
            msg = lambda: types.SimpleNamespace(choices=[types.SimpleNamespace(message=types.SimpleNamespace(content=next(replies)))])  # noqa: E731
            self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=lambda **kw: (seen.setdefault("prompt", kw["messages"][0]["content"]), msg())[1]))

    monkeypatch.setitem(sys.modules, "openai", types.SimpleNamespace(OpenAI=FakeOpenAI))
    res = Resources({"judge": {"backend": "openai", "base_url": "http://localhost:9/v1", "api_key": "k", "model": "m"}})
    r = METRICS.get("g-score").fn(B, res)
    assert seen["base_url"] == "http://localhost:9/v1" and "My dog died." in seen["prompt"]
    assert r.per_example["g-score"][0] == pytest.approx(4.75) and math.isnan(r.per_example["g-score"][1])
    assert r.info["unparsed"] == 1 and r.aggregate["g-score"] == pytest.approx(4.75)


def test_local_backend_expected_scores_in_range(tiny_model):
    r = METRICS.get("g-score").fn(B, Resources({"lm": "tiny-random-llama"}, lm=tiny_model), max_examples=1)
    scored = [x for x in r.per_example["g-score"] if not math.isnan(x)]
    assert len(scored) == 1 and 1.0 <= scored[0] <= 5.0 and r.info["backend"] == "local"


def test_nlpcc_composite_from_precomputed_components():
    comps = {"meteor": 0.3, "bleu-4": 10.0, "rouge-l": 0.2, "vector-extrema": 0.5, "dist-2": 40.0, "dist-3": 60.0,
             "g-score": 4.0}
    b = Batch(["x"], ["y"], extra={"_aggregates": dict(comps)})
    r = METRICS.get("nlpcc2025").fn(b, None)
    expect = 0.2 * 0.3 + 0.2 * 0.1 + 0.2 * 0.2 + 0.1 * 0.5 + 0.1 * 0.4 + 0.1 * 0.6
    assert r.aggregate["nlpcc2025-without-g"] == pytest.approx(expect)
    assert r.aggregate["nlpcc2025"] == pytest.approx(expect + 0.1 * 4.0 / 5)
    assert sum(NLPCC_WEIGHTS.values()) == pytest.approx(1.0)
    no_g = Batch(["x"], ["y"], extra={"_aggregates": {k: v for k, v in comps.items() if k != "g-score"}})
    assert math.isnan(METRICS.get("nlpcc2025").fn(no_g, None).aggregate["nlpcc2025"])


def test_local_judge_cache_equals_full_forward(tiny_model):
    """The shared-rubric cache, middle padding and per-aspect crop give the same expected score as one full
    forward of prompt + aspect suffix, for every example and aspect (3 examples of different lengths, batches of 2)."""
    import torch

    from empathkit.metrics.judge import ASPECTS, RUBRIC, _judge_local, local_judge_texts

    model, tok = tiny_model
    prompts = [RUBRIC.format(context="Speaker: my dog died", response="so sorry"),
               RUBRIC.format(context="Speaker: I won a prize today, a big one", response="congrats!"),
               RUBRIC.format(context="Speaker: my exam is tomorrow and I have not slept\nListener: why not?",
                             response="Try to rest a little; you know more than you think.")]
    got = _judge_local(prompts, model, tok, batch_size=2)
    digit_ids = [tok.encode(str(d), add_special_tokens=False)[-1] for d in range(1, 6)]
    for k, prompt in enumerate(prompts):
        head, sfx = local_judge_texts(prompt, tok)
        for a in ASPECTS:
            ids = tok(head + sfx[a], return_tensors="pt", add_special_tokens=False)["input_ids"]
            with torch.inference_mode():
                p = torch.softmax(model(input_ids=ids).logits[0, -1, digit_ids].float(), -1)
            assert got[k][a] == pytest.approx(float((p * torch.arange(1, 6)).sum()), abs=1e-5), (k, a)


def test_lm_dtype_auto_follows_native_bf16(monkeypatch):
    """``auto`` picks bfloat16 only where bf16 is native; explicit values pass through; the metric info says which."""
    from empathkit.metrics.resources import Resources
    from empathkit.models import backbones

    monkeypatch.setattr(backbones, "native_bf16", lambda: True)
    assert backbones.resolve_dtype("auto") == "bfloat16"
    assert Resources({"lm_dtype": "float32"}).lm_dtype() == "float32"
    monkeypatch.setattr(backbones, "native_bf16", lambda: False)
    assert backbones.resolve_dtype("auto") == "float32" and backbones.resolve_dtype("bfloat16") == "bfloat16"
    with pytest.raises(Exception, match="lm_dtype"):
        Resources({"lm_dtype": "int4"})


def test_slow_local_judge_warns_only_for_long_float32_cpu_runs(caplog):
    from empathkit.metrics.judge import _warn_slow_local_judge

    with caplog.at_level("WARNING", logger="empathkit.metrics.judge"):
        assert _warn_slow_local_judge(2547, "torch.float32", "cpu") > 600
        assert "g-score.max_examples" in caplog.text
        caplog.clear()
        _warn_slow_local_judge(2547, "torch.bfloat16", "cpu")  # native bf16: the fast path
        _warn_slow_local_judge(2547, "torch.float32", "cuda")
        _warn_slow_local_judge(1000, "torch.float32", "cpu")  # the recommended subset itself
    assert caplog.text == ""
