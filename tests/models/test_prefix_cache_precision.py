"""The shared-prefix KV cache and the inference precision (models/generation.py, models/precision.py)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from empathkit.models.backbones import tiny_random_llama
from empathkit.models.generation import GenerationSettings, generate_texts, prefix_store
from empathkit.models.precision import apply_precision, resolve_precision

PRE = "You are a kind listener who answers warmly and briefly to people who share something with you. "
PROMPTS = [PRE + x for x in ("I lost my job.", "My dog is sick and I am worried about him.", "I passed my exam!",
                             "We moved to a new town last week and I miss my friends a lot.", "ok")]


@pytest.fixture()
def tiny():
    model, tok = tiny_random_llama(seed=1)
    return model.eval(), tok


def _texts(model, tok, prompts=PROMPTS, **kw):
    s = GenerationSettings(max_new_tokens=8, batch_size=2, **kw)
    return [o.text for o in generate_texts(model, tok, prompts, s, progress=False)]


@pytest.mark.parametrize("sample", [False, True])
def test_prefix_cache_gives_the_uncached_outputs(tiny, sample):
    model, tok = tiny
    kw = dict(do_sample=sample, seed=5)
    plain = _texts(model, tok, prefix_cache=False, **kw)
    assert prefix_store(model).misses == 0
    cached = _texts(model, tok, **kw)
    assert cached == plain
    store = prefix_store(model)
    assert store.misses == 1 and len(store.entries) == 1
    assert len(next(iter(store.entries))) >= 16  # the shared system text, not a token or two


def test_prefix_cache_logits_match(tiny):
    model, tok = tiny
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:2]]
    p, cache = prefix_store(model).get(ids)
    import copy

    from empathkit.models.generation import _cache_kwarg, _prefixed_batch

    b = _prefixed_batch(ids, p, tok.pad_token_id, model.device)
    c = copy.deepcopy(cache)
    c.batch_repeat_interleave(2)
    with torch.inference_mode():
        got = model(input_ids=b["input_ids"][:, p:], attention_mask=b["attention_mask"],
                    position_ids=(b["attention_mask"].cumsum(-1) - 1).clamp(min=0)[:, p:],
                    **{_cache_kwarg(model): c}).logits[:, -1]
        ref = torch.stack([model(input_ids=torch.tensor([x])).logits[0, -1] for x in ids])
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_later_calls_with_the_same_prefix_reuse_it_and_single_prompts_are_not_cached(tiny):
    model, tok = tiny
    _texts(model, tok, PROMPTS[:3])
    again = _texts(model, tok, PROMPTS[1:4])
    assert prefix_store(model).hits == 1 and prefix_store(model).misses == 1
    assert again == _texts(model, tok, PROMPTS[1:4], prefix_cache=False)
    assert prefix_store(model).get([[1, 2, 3] * 10]) == (0, None)


def test_changed_weights_empty_the_store(tiny):
    model, tok = tiny
    _texts(model, tok)
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # an optimizer step changes weights in place
    after = _texts(model, tok)
    assert after == _texts(model, tok, prefix_cache=False)
    assert prefix_store(model).misses == 2


def test_no_prefix_cache_with_a_batch_context_or_without_a_shared_prefix(tiny):
    model, tok = tiny
    s = GenerationSettings(max_new_tokens=4, batch_size=2)
    generate_texts(model, tok, PROMPTS, s, progress=False, batch_context=lambda idx: contextlib.nullcontext())
    generate_texts(model, tok, ["hello there", "what a day it was"], s, progress=False)
    assert prefix_store(model).misses == 0 and not prefix_store(model).entries


def test_streaming_with_the_prefix_cache(tiny):
    model, tok = tiny
    deltas: dict[int, str] = {}
    outs = generate_texts(model, tok, PROMPTS, GenerationSettings(max_new_tokens=8, batch_size=3), progress=False,
                          on_text=lambda i, d: deltas.__setitem__(i, deltas.get(i, "") + d))
    assert prefix_store(model).misses == 1
    assert [deltas.get(i, "").strip() for i in range(len(PROMPTS))] == [o.text for o in outs]


def test_precision_resolution(monkeypatch):
    import empathkit.models.backbones as bb

    monkeypatch.setattr(bb, "native_bf16", lambda: False)
    assert resolve_precision("auto") == "float32"
    monkeypatch.setattr(bb, "native_bf16", lambda: True)
    assert resolve_precision("auto") == "bfloat16"
    assert resolve_precision("float32") == "float32"
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int3")


def test_apply_precision_converts_once_and_records_it():
    from empathkit.methods.prompt import PromptConfig, PromptGenerator

    model, tok = tiny_random_llama(seed=2)
    gen = PromptGenerator(model.eval(), tok, PromptConfig())
    assert apply_precision(gen, "bfloat16") == "bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in gen.model.parameters())
    assert gen.info["precision"] == "bfloat16"
    reply = gen.chat([[{"role": "user", "content": "I lost my job today."}]],
                     GenerationSettings(max_new_tokens=4))[0]
    assert reply.completion_tokens >= 1
    from empathkit.types import Example, Turn

    ex = Example(id="d#1", dialogue_id="d", emotion="sad", situation="", context=(Turn("speaker", "I lost my job."),),
                 target="I am sorry.")
    assert torch.isfinite(torch.tensor(gen.score([ex])[0].nll))


def test_a_generator_without_a_model_only_takes_float32():
    from empathkit.errors import ConfigError

    class NoModel:
        info: dict = {}

    assert apply_precision(NoModel(), "float32") == "float32"
    with pytest.raises(ConfigError, match="no torch model"):
        apply_precision(NoModel(), "bfloat16")


def test_generate_applies_and_records_the_precision(tmp_path):
    from empathkit.api import run_generate
    from empathkit.data.jsonl import write_jsonl
    from empathkit.runs import read_jsonl
    from empathkit.testing import make_dialogues

    write_jsonl(make_dialogues(), tmp_path / "d.jsonl")
    cfg = {"method": "prompt", "model": {"backbone": "tiny-random-llama"}, "output_dir": str(tmp_path / "runs"),
           "data": {"source": str(tmp_path / "d.jsonl"), "split": "train", "train_limit": 2},
           "generation": {"max_new_tokens": 3, "precision": "bfloat16"}}
    rd = run_generate(cfg, progress=False)
    rows = read_jsonl(rd / "predictions.jsonl")
    assert rows and all(r["settings"]["precision"] == "bfloat16" for r in rows)


def test_apply_precision_leaves_a_shared_model_alone():
    from empathkit.methods.prompt import PromptConfig, PromptGenerator

    model, tok = tiny_random_llama(seed=2)
    a, b = PromptGenerator(model, tok, PromptConfig()), PromptGenerator(model, tok, PromptConfig())
    apply_precision(a, "bfloat16")
    assert next(a.model.parameters()).dtype == torch.bfloat16
    assert next(b.model.parameters()).dtype == torch.float32 and b.model is model


def test_beam_search_reaches_generate_and_arrives_whole(tiny):
    """num_beams > 1: HF beam search (no prefix cache, no streaming); on_text gets each reply once, whole."""
    model, tok = tiny
    s = dict(max_new_tokens=6, batch_size=2, repetition_penalty=1.0)
    greedy = generate_texts(model, tok, PROMPTS[:2], GenerationSettings(**s), progress=False)
    deltas: dict[int, list[str]] = {}
    misses = prefix_store(model).misses
    beam = generate_texts(model, tok, PROMPTS[:2], GenerationSettings(num_beams=4, **s), progress=False,
                          on_text=lambda i, d: deltas.setdefault(i, []).append(d))
    assert {i: "".join(d) for i, d in deltas.items()} == {i: o.text for i, o in enumerate(beam)}
    assert all(len(d) == 1 for d in deltas.values())
    assert prefix_store(model).misses == misses  # the prefix cache stayed off

    # the tiny model's greedy replies repeat one token; its beams find other sequences (num_beams reached generate)
    assert [o.text for o in beam] != [o.text for o in greedy]
    assert [o.new_tokens for o in beam] == [6, 6] and all(o.finish_reason == "length" for o in beam)



def test_no_repeat_ngram_size_reaches_generate(tiny):
    from empathkit.models.generation import generate_kwargs

    model, tok = tiny
    assert "no_repeat_ngram_size" not in generate_kwargs(GenerationSettings(), tok)
    s = dict(max_new_tokens=8, batch_size=2, repetition_penalty=1.0, prefix_cache=False)
    plain = generate_texts(model, tok, PROMPTS[:2], GenerationSettings(**s), progress=False)
    guarded = generate_texts(model, tok, PROMPTS[:2], GenerationSettings(no_repeat_ngram_size=1, **s), progress=False)
    assert plain[0].text == "." * len(plain[0].text)  # the tiny model repeats one token …
    assert all(o.new_tokens == 8 and "." * 2 not in o.text for o in guarded)  # … which 1-gram banning forbids


def test_static_cache_gives_the_dynamic_cache_outputs(tiny):
    """cache: static (transformers' preallocated StaticCache) decodes the same greedy tokens as the dynamic cache,
    in padded batches too; it bypasses the shared-prefix store (which needs a dynamic cache); compile needs it."""
    from empathkit.errors import ConfigError
    from empathkit.models.generation import generate_kwargs

    model, tok = tiny
    seen = []
    orig = model.generate

    def spy(*a, **kw):
        out = orig(*a, **kw, return_dict_in_generate=True)
        seen.append(type(out.past_key_values).__name__)
        return out.sequences

    dynamic = _texts(model, tok, prefix_cache=False)
    model.generate = spy
    try:
        static = _texts(model, tok, cache="static")
    finally:
        del model.generate
    assert static == dynamic and any(t.strip() for t in static)
    assert seen and set(seen) == {"StaticCache"} and prefix_store(model).misses == 0
    assert generate_kwargs(GenerationSettings(cache="static", compile=True), tok)["compile_config"]._compile_all_devices
    with pytest.raises(ConfigError, match="cache=static"):
        generate_kwargs(GenerationSettings(compile=True), tok)
