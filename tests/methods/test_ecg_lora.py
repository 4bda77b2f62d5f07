"""ECG-LoRA: exact gating of the LoRA branch, gradient scaling, the Appendix 7.1 losses, save → load, gate control."""

from __future__ import annotations

import pytest
import torch

from empathkit.data import to_examples
from empathkit.methods.ecg_lora.config import ECGModelConfig, ECGTrainConfig
from empathkit.methods.ecg_lora.gate import EmotionGate
from empathkit.methods.ecg_lora.layers import _expand, attach_gate
from empathkit.methods.ecg_lora.losses import contrastive_loss, regularization_loss
from empathkit.models.generation import GenerationSettings
from empathkit.types import Controls
from empathkit.testing import make_dialogues

pytestmark = pytest.mark.usefixtures("one_torch_thread")






def gated_tiny(seed: int = 0, d_emo: int = 8):
    """tiny random Llama + LoRA r=4 on q/k/v/o with random (non-zero) B, and an un-hooked copy for reference."""
    from empathkit.methods.sft import build_lora_model
    from empathkit.models.backbones import tiny_random_llama

    model, tok = tiny_random_llama()
    peft = build_lora_model(model, ECGModelConfig(backbone="tiny-random-llama", lora_r=4, lora_alpha=8))
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in peft.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    peft.eval()
    gate = EmotionGate(d_emo=d_emo, init="random")
    return peft, tok, gate


@pytest.fixture(scope="module")
def batch():
    from empathkit.models.backbones import load_tokenizer

    tok = load_tokenizer("tiny-random-llama")
    return tok(["I lost my keys again today.", "We won the final match!"], return_tensors="pt", padding=True)


def test_gate_zero_is_base_model_and_gate_one_is_plain_lora(batch):
    peft, _, gate = gated_tiny()
    with torch.no_grad():
        plain = peft(**batch).logits
        with peft.disable_adapter():
            base = peft(**batch).logits
        attach_gate(peft, gate)
        mixed = {}
        for g in ([0.0, 0.0], [1.0, 1.0], [0.0, 1.0]):
            with gate.use(torch.tensor(g)):
                mixed[tuple(g)] = peft(**batch).logits
    assert not torch.allclose(plain, base, atol=1e-3)  # the adapter does change the output
    torch.testing.assert_close(mixed[(0.0, 0.0)], base, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[(1.0, 1.0)], plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[(0.0, 1.0)][0], base[0], atol=1e-5, rtol=1e-5)  # per example
    torch.testing.assert_close(mixed[(0.0, 1.0)][1], plain[1], atol=1e-5, rtol=1e-5)


def test_gradients_of_A_and_B_scale_with_the_gate():
    peft, _, gate = gated_tiny()
    attach_gate(peft, gate)
    layer = peft.base_model.model.model.layers[0].self_attn.q_proj
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    torch.manual_seed(1)
    x, upstream = torch.randn(1, 5, 64), torch.randn(1, 5, 64)
    grads = {}
    for g in (0.25, 1.0):
        with gate.use(torch.tensor([g])):
            gA, gB = torch.autograd.grad((layer(x) * upstream).sum(), [A, B])
        grads[g] = (gA, gB)
    assert grads[1.0][0].abs().sum() > 0 and grads[1.0][1].abs().sum() > 0
    torch.testing.assert_close(grads[0.25][0], 0.25 * grads[1.0][0])
    torch.testing.assert_close(grads[0.25][1], 0.25 * grads[1.0][1])


def test_gate_is_repeated_for_beam_search_and_missing_gate_fails(batch):
    assert _expand(torch.tensor([0.1, 0.9]), 4).tolist() == pytest.approx([0.1, 0.1, 0.9, 0.9])
    with pytest.raises(RuntimeError):
        _expand(torch.tensor([0.1, 0.9]), 3)
    peft, tok, gate = gated_tiny()
    attach_gate(peft, gate)
    with pytest.raises(RuntimeError, match="without a gate"):
        peft(**batch)
    tok.padding_side = "left"
    with torch.no_grad(), gate.use(torch.tensor([0.0, 1.0])):
        out = peft.generate(**batch, max_new_tokens=3, num_beams=2, num_return_sequences=2, do_sample=False,
                            pad_token_id=tok.pad_token_id)
    assert out.shape[0] == 4


def test_contrastive_loss_matches_hand_computation():
    g = torch.tensor([0.1, 0.15, 0.5, 0.9])
    e = torch.tensor([0, 0, 1, 2])
    out = contrastive_loss(g, e, omega=0.5, margin=0.5)
    # same-emotion ordered pairs (0,1),(1,0): |Δ|=0.05 → 0.1/12; different pairs hinge 0.5-|Δ|: 0.1, 0.15, 0.1 ×2 → 0.7/12
    assert float(out["cons"]) == pytest.approx(0.1 / 12)
    assert float(out["sep"]) == pytest.approx(0.7 / 12)
    assert float(out["con"]) == pytest.approx(0.5 * 0.1 / 12 + 0.5 * 0.7 / 12)
    assert float(contrastive_loss(g, e, margin=0.2)["sep"]) == 0.0  # all pairs already separated by ≥ 0.2


def test_regularization_loss_matches_hand_computation():
    v = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [1.0, 1.5]], requires_grad=True)
    e = torch.tensor([0, 0, 1, 2])
    out = regularization_loss(v, e, lambda_inter=0.9, lambda_intra=0.1, margin=1.0)
    # centroids (1,0),(1,1),(1,1.5); intra: class 0 mean sq. dist 1, over M=3 classes → 1/3
    # inter: distances 1, 1.5, 0.5 → hinge 0, 0, 0.5 → 0.5 / (3·2)
    assert float(out["intra"].detach()) == pytest.approx(1 / 3)
    assert float(out["inter"].detach()) == pytest.approx(0.5 / 6)
    assert float(out["reg"].detach()) == pytest.approx(0.9 * 0.5 / 6 + 0.1 / 3)
    z = torch.zeros(3, 4, requires_grad=True)
    same = regularization_loss(z, torch.tensor([0, 1, 2]))
    same["reg"].backward()  # identical centroids: finite (zero-safe) gradient, no NaN
    assert float(same["inter"]) == pytest.approx(1.0 * 3 / 6, abs=1e-5) and torch.isfinite(z.grad).all()


def test_ablation_switches_remove_the_right_terms():
    from empathkit.methods.ecg_lora.trainer import ECGTrainer, apply_ablation

    assert apply_ablation({}, {"ablation": "no-emotion-conditioning"})[0]["emotion_conditioning"] is False
    assert apply_ablation({}, {"ablation": "no-reg-loss"})[1]["reg_loss"] is False
    assert apply_ablation({}, {"ablation": "no-con-loss"})[1]["con_loss"] is False
    g = torch.tensor([0.5, 0.52, 0.9])
    e = torch.tensor([0, 1, 2])

    def terms(model_kw, train_kw):
        t = object.__new__(ECGTrainer)
        t.mcfg, t.tcfg = ECGModelConfig(**model_kw), ECGTrainConfig(**train_kw)
        t._last = (g, torch.randn(3, 4) * 0.1, e)
        return set(ECGTrainer.extra_losses(t, torch.nn.Module().eval(), e))

    assert terms({}, {}) == {"con", "reg"}
    assert terms({}, {"con_loss": False}) == {"reg"}
    assert terms({}, {"reg_loss": False}) == {"con"}
    assert terms({"emotion_conditioning": False}, {}) == set()
    unc = EmotionGate(d_emo=4, conditioning=False)
    assert len(set(unc.values().values())) == 1  # w/o EmoCond: one gate for every emotion


def _gen(peft, tok, gate, mc=None, predictor=None):
    from empathkit.methods.ecg_lora import ECGGenerator

    return ECGGenerator(peft, tok, mc or ECGModelConfig(backbone="tiny-random-llama"), gate, predictor)


def test_gate_control_and_unknown_emotion():
    peft, tok, gate = gated_tiny()
    attach_gate(peft, gate)
    exs = to_examples(make_dialogues(), "last-listener")[:4]
    s = GenerationSettings(max_new_tokens=5, batch_size=4)
    gen = _gen(peft, tok, gate)
    learned = gate.values()
    gen.generate(exs, s, progress=False)
    assert sorted(gen.last_gates) == pytest.approx(sorted(learned[x.emotion] for x in exs))
    forced0 = [p.prediction for p in gen.generate(exs, s, [Controls(gate=0.0)] * 4, progress=False)]
    with peft.disable_adapter():
        base = [p.prediction for p in _gen(peft, tok, gate).generate(exs, s, [Controls(gate=0.0)] * 4, progress=False)]
    assert forced0 == base
    const = _gen(peft, tok, gate, ECGModelConfig(backbone="tiny-random-llama", gate=0.3,))
    const.generate(exs, s, progress=False)
    assert const.last_gates == pytest.approx([0.3] * 4)
    per = _gen(peft, tok, gate, ECGModelConfig(backbone="tiny-random-llama", gate_per_emotion={"sad": 0.9}))
    assert per.gate_values(["sad", "joyful"]) == pytest.approx([0.9, learned["joyful"]])
    # chat without a label: the predictor decides; without a predictor → the mean gate
    conv = [[{"role": "user", "content": "My dog died."}]]
    pred = _gen(peft, tok, gate, predictor=lambda ctxs: ["devastated"] * len(ctxs))
    pred.chat(conv, s)
    assert pred.last_gates == pytest.approx([learned["devastated"]])
    mean = _gen(peft, tok, gate, ECGModelConfig(backbone="tiny-random-llama", unknown_emotion="mean"))
    mean.chat(conv, s)
    assert mean.last_gates == pytest.approx([sum(learned.values()) / 32])
    # evaluation with predicted labels keeps the gold label in the prediction record
    pe = _gen(peft, tok, gate, ECGModelConfig(backbone="tiny-random-llama", emotion_source="predicted"),
              predictor=lambda ctxs: ["proud"] * len(ctxs))
    out = pe.generate(exs[:2], s, progress=False)
    assert pe.last_gates == pytest.approx([learned["proud"]] * 2)
    assert out[0].emotion == exs[0].emotion and out[0].extra["predicted_emotion"] == "proud"


def test_save_load_gives_identical_generations(tmp_path):
    from empathkit.methods.ecg_lora import load
    from empathkit.runs import save_run_meta

    peft, tok, gate = gated_tiny(d_emo=8)
    with torch.no_grad():
        gate.gate.weight.normal_(0, 1.0)
    attach_gate(peft, gate)
    exs = to_examples(make_dialogues(), "last-listener")[:6]
    s = GenerationSettings(max_new_tokens=6, batch_size=3)
    before = [p.prediction for p in _gen(peft, tok, gate).generate(exs, s, progress=False)]
    rd = tmp_path / "run"
    save_run_meta(rd, {"method": "ecg-lora", "seed": 0, "model": {"backbone": "tiny-random-llama", "lora_r": 4,
                                                                   "lora_alpha": 8, "d_emo": 8}}, 0)
    peft.save_pretrained(rd / "adapter")
    gate.save(rd / "adapter")
    assert (rd / "adapter" / "adapter_config.json").is_file() and (rd / "adapter" / "ecg_gate.safetensors").is_file()
    loaded = load({}, rd)
    assert loaded.gate.values() == pytest.approx(gate.values())
    after = [p.prediction for p in loaded.generate(exs, s, progress=False)]
    assert after == before
    forced = load({"gate": 0.0}, rd)  # inference-time override through the config
    forced.generate(exs[:1], s, progress=False)
    assert forced.last_gates == [0.0]
