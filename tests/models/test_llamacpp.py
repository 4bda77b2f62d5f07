"""``generation.backend: llama-cpp`` (empathkit/methods/llamacpp.py): GGUF resolution and errors (always run), and —
when llama-cpp-python is installed — export → GGUF → llama.cpp giving the transformers path's greedy tokens with the
same prompts, streaming, cancellation, scores, and ECG-LoRA's gate as the adapter scale."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from empathkit.errors import ConfigError
from empathkit.methods.causal import CausalLMGenerator
from empathkit.models.backbones import tiny_random_llama
from empathkit.models.generation import GenerationSettings
from empathkit.methods.llamacpp import (  # resolve_gguf: models/llamacpp_files.py
    resolve_gguf,
    with_backend,
)
from empathkit.types import Controls

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")
needs_llama_cpp = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                     reason="llama-cpp-python not installed (the optional llama-cpp extra)")
SYSTEM = "You are a kind listener who answers warmly and briefly to people who share something with you."
CONVS = [[{"role": "user", "content": t}] for t in (
    "I lost my job today and I feel awful.", "My dog is sick and I am worried about him.", "I passed my exam!",
    "We moved to a new town last week and I miss my friends a lot.")]


def _tiny_generator(seed=1):
    model, tok = tiny_random_llama(seed=seed)
    with torch.no_grad():  # larger weights: clear logit margins, so float rounding cannot flip a greedy choice
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(8.0)
    return CausalLMGenerator(model.eval(), tok, SYSTEM)


# -- without llama.cpp ---------------------------------------------------------------------------------------------
def test_transformers_backend_is_the_generator_itself_and_bad_names_fail():
    gen = _tiny_generator()
    assert with_backend(gen, "transformers") is gen and with_backend(gen, None) is gen
    with pytest.raises(ConfigError, match="unknown backend 'vllm'"):
        with_backend(gen, "vllm")


def test_bad_gguf_paths_are_one_line_errors(tmp_path):
    gen = _tiny_generator()
    with pytest.raises(ConfigError, match="no such GGUF file"):
        resolve_gguf(gen, tmp_path / "missing.gguf")
    (tmp_path / "x.gguf").write_bytes(b"not gguf at all")
    with pytest.raises(ConfigError, match="not a GGUF file"):
        resolve_gguf(gen, tmp_path / "x.gguf")
    with pytest.raises(ConfigError, match="export.json"):
        resolve_gguf(gen, tmp_path)
    with pytest.raises(ConfigError, match="give a GGUF file"):
        resolve_gguf(gen)  # a generator with neither a run nor the default backbone
    gen.source_dir = tmp_path
    with pytest.raises(ConfigError, match="no GGUF export; run `empathkit export"):
        resolve_gguf(gen)


def test_an_export_folder_resolves_to_its_files(tmp_path):
    for name in ("r-base-f16.gguf", "r-lora-f16.gguf"):
        (tmp_path / name).write_bytes(b"GGUF" + bytes(8))
    (tmp_path / "export.json").write_text(json.dumps({"kind": "base+lora",
                                                      "files": ["r-base-f16.gguf", "r-lora-f16.gguf"]}))
    gen = _tiny_generator()
    for given in (tmp_path, tmp_path / "r-base-f16.gguf"):
        files = resolve_gguf(gen, given)
        assert files.model.name == "r-base-f16.gguf" and files.lora.name == "r-lora-f16.gguf"


# -- with llama.cpp --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    from empathkit.export.gguf import write_model_gguf

    gen = _tiny_generator()
    path = write_model_gguf(gen.model, gen.tokenizer, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf", "f32")
    return gen, path


@needs_llama_cpp
def test_greedy_tokens_equal_the_transformers_path(tiny_gguf):
    gen, path = tiny_gguf
    lcpp = with_backend(_tiny_generator(), "llama-cpp", path, threads=1)
    s = GenerationSettings(max_new_tokens=12, batch_size=2, repetition_penalty=1.3)
    ref, got = gen.chat(CONVS, s), lcpp.chat(CONVS, s)
    assert [r.text for r in got] == [r.text for r in ref]
    assert [(r.prompt_tokens, r.completion_tokens, r.finish_reason) for r in got] == \
        [(r.prompt_tokens, r.completion_tokens, r.finish_reason) for r in ref]
    assert len({r.text for r in got}) > 1  # the prompts really steer the output
    assert lcpp.info["backend"] == "llama-cpp" and lcpp.info["gguf_type"] == "f32" and lcpp.model is None
    # the prompt is empathkit's rendering; llama.cpp's own tokenizer (from the GGUF) reads it the same way
    text = gen.prompt(CONVS[0], None, s)
    assert lcpp.engine.llm.tokenize(text.encode(), add_bos=False, special=True) == \
        gen.tokenizer(text, add_special_tokens=False)["input_ids"]
    # the KV of the previous prompt's common prefix is reused without changing anything
    off = lcpp.chat(CONVS, s.model_copy(update={"prefix_cache": False}))
    assert [r.text for r in off] == [r.text for r in got]


@needs_llama_cpp
def test_streaming_cancellation_and_scores(tiny_gguf):
    from empathkit.data.protocols import to_examples
    from empathkit.testing import make_dialogues

    gen, path = tiny_gguf
    lcpp = with_backend(_tiny_generator(), "llama-cpp", path, threads=1)
    s = GenerationSettings(max_new_tokens=10)
    deltas: dict[int, str] = {}
    replies = lcpp.chat(CONVS[:2], s, on_text=lambda i, d: deltas.__setitem__(i, deltas.get(i, "") + d))
    assert [deltas.get(i, "").strip() for i in range(2)] == [r.text for r in replies]
    steps = []
    cut = lcpp.chat(CONVS[:2], s, should_stop=lambda i: steps.append(i) or (i == 1 and steps.count(1) >= 3))
    assert cut[0].finish_reason == replies[0].finish_reason and cut[0].text == replies[0].text
    assert cut[1].finish_reason == "cancelled" and cut[1].completion_tokens == 3
    exs = to_examples(make_dialogues()[:3], "last-listener")
    ref, got = gen.score(exs), lcpp.score(exs)
    assert [g.tokens for g in got] == [r.tokens for r in ref]
    for g, r in zip(got, ref):
        assert g.nll == pytest.approx(r.nll, rel=1e-4)


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory):
    from empathkit.data.jsonl import write_jsonl
    from empathkit.methods import METHODS
    from empathkit.testing import make_dialogues

    root = tmp_path_factory.mktemp("ecg-run")
    write_jsonl(make_dialogues(), root / "dialogues.jsonl")
    cfg = {"method": "ecg-lora", "seed": 0,
           "model": {"backbone": "tiny-random-llama", "lora_r": 4, "d_emo": 8, "unknown_emotion": "mean"},
           "train": {"max_steps": 3, "batch_size": 4, "lr": 2e-1, "max_length": 64, "warmup_ratio": 0.0,
                     "early_stopping_patience": None, "save_every": 100},
           "data": {"source": str(root / "dialogues.jsonl"), "protocol": "every-listener"}}
    METHODS.get("ecg-lora").train(cfg, root / "run", progress=False)
    return root / "run"


@needs_llama_cpp
def test_ecg_lora_gate_is_the_adapter_scale(ecg_run):
    from empathkit.api import load_generator
    from empathkit.data.protocols import to_examples
    from empathkit.export.gguf import export_run
    from empathkit.testing import make_dialogues

    export_run(ecg_run, out_type="f32")
    ref = load_generator(run_dir=ecg_run)
    lcpp = with_backend(load_generator(run_dir=ecg_run), "llama-cpp", threads=1)  # the run's own export
    assert lcpp.engine.files.lora is not None
    exs = to_examples(make_dialogues()[:2], "last-listener")
    nll = {}
    for g in (0.0, 1.0, 0.4):
        c = [Controls(gate=g)] * len(exs)
        a, b = ref.score(exs, c), lcpp.score(exs, c)
        for x, y in zip(a, b):
            assert y.nll == pytest.approx(x.nll, rel=1e-4)
        nll[g] = sum(x.nll for x in b)
    assert abs(nll[1.0] - nll[0.0]) > 1e-3  # the adapter really changes the model, and the scale follows the gate
    s = GenerationSettings(max_new_tokens=6)
    r = lcpp.chat(CONVS[:1], s, [Controls(emotion="sad")])[0]
    assert r.info["gate"] == pytest.approx(ref.gate_values(["sad"])[0])
    assert r.text == ref.chat(CONVS[:1], s, [Controls(emotion="sad")])[0].text


@needs_llama_cpp
@pytest.mark.integration
def test_smollm2_f32_export_decodes_like_transformers(tmp_path, smollm2):
    """The real backbone: f32 GGUF greedy tokens equal transformers' (q8_0 agreement is reported, not asserted)."""
    from empathkit.export.gguf import write_model_gguf
    from empathkit.methods.prompt import load as load_prompt

    model, tok = smollm2
    gen = load_prompt({"template": "structured-v1"})
    s = GenerationSettings(max_new_tokens=16)
    ref = gen.chat(CONVS, s)
    agree = {}
    for t in ("f32", "q8_0"):
        path = write_model_gguf(model, tok, tmp_path / f"smollm2-{t}.gguf", t)
        lcpp = with_backend(load_prompt({"template": "structured-v1"}), "llama-cpp", path, threads=2)
        got = lcpp.chat(CONVS, s)
        agree[t] = sum(a.text == b.text for a, b in zip(got, ref))
        if t == "f32":
            assert [a.text for a in got] == [b.text for b in ref]
        path.unlink()
    print(f"greedy texts equal to transformers float32: {agree} of {len(CONVS)}")
