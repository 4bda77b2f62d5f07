"""GGUF export (empathkit/export/gguf.py): lossless f32 round trip through transformers' GGUF loader, f16 / q8_0
within their rounding, the tokenizer round trip, merged SFT runs, ECG-LoRA as base + LoRA adapter, and llama.cpp
loading when llama-cpp-python is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from empathkit.errors import ConfigError
from empathkit.export.gguf import export_run, write_lora_gguf, write_model_gguf
from empathkit.models.backbones import tiny_random_llama
from empathkit.testing import make_dialogues

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")
TEXT = "I lost my job today and I feel awful about it."


def _load(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval(),
            AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name))


def _logits(model, tok, text=TEXT):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


@pytest.mark.parametrize("out_type,atol", [("f32", 0.0), ("f16", 2e-3), ("q8_0", 5e-2)])
def test_model_round_trip(tmp_path, out_type, atol):
    model, tok = tiny_random_llama(seed=0)
    model.eval()
    path = write_model_gguf(model, tok, tmp_path / f"m-{out_type}.gguf", out_type)
    back, tok2 = _load(path)
    diff = (_logits(model, tok) - _logits(back, tok)).abs().max().item()
    assert diff <= atol
    s = "Hello, I'm so sorry <|im_start|> 😀 — really."
    assert tok2(s)["input_ids"] == tok(s)["input_ids"]
    assert tok2.eos_token == tok.eos_token and tok2.chat_template == tok.chat_template


def test_special_tokens_are_control_tokens_and_no_bos_is_added(tmp_path):
    """llama.cpp / Ollama parse ``<|im_start|>`` in a chat prompt only when the GGUF types it CONTROL."""
    import gguf

    model, tok = tiny_random_llama(seed=0)
    r = gguf.GGUFReader(str(write_model_gguf(model, tok, tmp_path / "m.gguf", "f32")))
    f = r.fields["tokenizer.ggml.token_type"]
    types = [int(f.parts[i][0]) for i in f.data]
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        assert types[tok.convert_tokens_to_ids(t)] == gguf.TokenType.CONTROL
    assert types[tok.convert_tokens_to_ids("!")] == gguf.TokenType.NORMAL
    assert bool(r.fields["tokenizer.ggml.add_bos_token"].parts[-1][0]) is False


def test_bad_type_and_non_llama_are_clear_errors(tmp_path):
    model, tok = tiny_random_llama(seed=0)
    with pytest.raises(ConfigError, match="unknown GGUF type"):
        write_model_gguf(model, tok, tmp_path / "x.gguf", "q3_k")
    from empathkit.models.backbones import tiny_random_t5

    t5, t5tok = tiny_random_t5()
    with pytest.raises(ConfigError, match="llama-architecture"):
        write_model_gguf(t5, t5tok, tmp_path / "t5.gguf", "f32")


def test_lora_adapter_tensors_follow_the_base_layout(tmp_path):
    import gguf
    from peft import LoraConfig, get_peft_model
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    model, _ = tiny_random_llama(seed=0)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_()
    path = write_lora_gguf(peft, tmp_path / "lora.gguf", "f32")
    r = gguf.GGUFReader(str(path))
    assert float(r.fields["adapter.lora.alpha"].parts[-1][0]) == 8.0
    tensors = {t.name: np.array(t.data) for t in r.tensors}
    assert len(tensors) == 2 * 3 * model.config.num_hidden_layers
    cfg = model.config
    proc = LlamaTensorProcessor(config={"num_attention_heads": cfg.num_attention_heads,
                                        "num_key_value_heads": cfg.num_key_value_heads})
    mod = peft.base_model.model.model.layers[1].self_attn
    for short, hf in (("attn_q", mod.q_proj), ("attn_k", mod.k_proj), ("attn_v", mod.v_proj)):
        a = tensors[f"blk.1.{short}.weight.lora_a"]
        b = tensors[f"blk.1.{short}.weight.lora_b"]
        np.testing.assert_array_equal(a, hf.lora_A["default"].weight.detach().numpy())
        # transformers' loader un-permutes Q / K rows; the adapter's B must come back the same way
        b_back = proc.process(b, f"blk.1.{short}.weight").weights
        np.testing.assert_allclose(b_back, hf.lora_B["default"].weight.detach().numpy(), rtol=0, atol=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from empathkit.data.jsonl import write_jsonl
    from empathkit.methods import METHODS

    root = tmp_path_factory.mktemp("gguf-runs")
    write_jsonl(make_dialogues(), root / "dialogues.jsonl")
    train = {"max_steps": 2, "batch_size": 4, "lr": 5e-2, "max_length": 64, "warmup_ratio": 0.0,
             "early_stopping_patience": None, "save_every": 100}
    out = {}
    for method, extra in (("sft", {}), ("ecg-lora", {"d_emo": 8, "unknown_emotion": "mean"})):
        cfg = {"method": method, "seed": 0, "model": {"backbone": "tiny-random-llama", "lora_r": 4} | extra,
               "train": train, "data": {"source": str(root / "dialogues.jsonl"), "protocol": "every-listener"}}
        METHODS.get(method).train(cfg, root / method, progress=False)
        out[method] = root / method
    return out


def test_sft_run_exports_merged_and_matches_the_run(runs):
    from empathkit.training.backbone import load_trained

    info = export_run(runs["sft"], out_type="f32")
    assert info["kind"] == "merged" and len(info["files"]) == 1
    assert json.loads((Path(info["dir"]) / "export.json").read_text())["method"] == "sft"
    back, _ = _load(Path(info["dir"]) / info["files"][0])
    model, tok, _ = load_trained(runs["sft"])
    torch.testing.assert_close(_logits(back, tok), _logits(model, tok), atol=1e-4, rtol=1e-4)


def test_ecg_run_exports_base_plus_adapter(runs, tmp_path):
    info = export_run(runs["ecg-lora"], tmp_path / "out", out_type="f16")
    assert info["kind"] == "base+lora" and len(info["files"]) == 2
    assert all((tmp_path / "out" / f).stat().st_size > 0 for f in info["files"])
    back, _ = _load(tmp_path / "out" / info["files"][0])  # the base loads as a plain model
    base, tok = tiny_random_llama(seed=0)
    torch.testing.assert_close(_logits(back, tok), _logits(base.eval(), tok), atol=2e-3, rtol=1e-3)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        export_run(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
def test_llama_cpp_loads_the_export(runs):
    import llama_cpp

    info = export_run(runs["sft"], out_type="q8_0")
    llm = llama_cpp.Llama(str(Path(info["dir"]) / info["files"][0]), n_ctx=256, verbose=False)
    out = llm.create_chat_completion([{"role": "user", "content": "hi"}], max_tokens=4)
    assert out["choices"][0]["message"]["content"] is not None
