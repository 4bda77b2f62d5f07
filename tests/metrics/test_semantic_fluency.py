"""BERTScore / BARTScore / Vector Extrema / perplexity: library equality and hand checks on tiny models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from empathkit.metrics import METRICS
from empathkit.metrics.base import Batch
from empathkit.metrics.resources import Resources
from tests.conftest import requires_minilm



@pytest.fixture
def TINY(tiny_model):
    return Resources({"lm": "tiny-random-llama"}, lm=tiny_model)

HYPS = ["I am so sorry to hear that.", "Congratulations, that is great news!", "What happened next?"]
REFS = ["That is terrible, I am sorry.", "Wow, well done!", "Did you call anyone?"]


def test_extrema_keeps_largest_magnitude_per_dimension():
    from empathkit.metrics.semantic import extrema

    v = np.array([[0.1, -0.9, 0.3], [0.5, 0.2, -0.4]])
    assert extrema(v).tolist() == [0.5, -0.9, -0.4]


def test_vector_extrema_with_word_vector_file_hand_computed(tmp_path):
    f = tmp_path / "vec.txt"
    f.write_text("i 1 0\nam 0 1\nsad -2 0\nhappy 0 -3\n")
    r = METRICS.get("vector-extrema").fn(Batch(["i am sad", "unknown words"], ["i am happy", "i"]), None,
                                         embeddings=str(f))
    # hyp extrema (-2, 1), ref extrema (1, -3): cos = (-2 - 3) / (sqrt 5 · sqrt 10)
    assert r.per_example["vector-extrema"][0] == pytest.approx(-5 / (math.sqrt(5) * math.sqrt(10)))
    assert r.per_example["vector-extrema"][1] == 0.0  # nothing in the vocabulary → 0


def test_causal_loglik_is_padding_and_batching_invariant(tiny_model):
    import torch

    from empathkit.metrics.semantic import causal_loglik

    model, tok = tiny_model
    pre = ["Text: a much longer prefix than the other one here\n", "Hi\n"]
    tgt = ["short target", "a somewhat longer target sentence"]
    s_b, c_b = causal_loglik(model, tok, pre, tgt, batch_size=2)
    s_1, c_1 = causal_loglik(model, tok, pre, tgt, batch_size=1)
    assert s_b == pytest.approx(s_1, abs=1e-4) and c_b == c_1
    # by hand for example 1: sum over target tokens of log p(token | everything before)
    p = ([tok.bos_token_id] if tok.bos_token_id is not None else []) + tok(pre[1], add_special_tokens=False)["input_ids"]
    t = tok(tgt[1], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + t])
    with torch.inference_mode():
        lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    manual = sum(lp[len(p) - 1 + k, t[k]].item() for k in range(len(t)))
    assert s_b[1] == pytest.approx(manual, abs=1e-4) and c_b[1] == len(t)


def test_perplexity_token_level_and_generator_scores(TINY):
    b = Batch(HYPS, REFS)
    r = METRICS.get("perplexity").fn(b, TINY, batch_size=2)
    assert r.aggregate["ppl"] > 1000  # random tiny model: close to uniform over a 49k vocabulary
    assert len(r.per_example["ppl"]) == 3 and r.info["unit"] == "LM tokens"
    sub = METRICS.get("perplexity").fn(b, TINY, max_examples=2)
    assert sum(math.isnan(x) for x in sub.per_example["ppl"]) == 1 and sub.info["scored"] == 2
    given = Batch(HYPS, REFS, extra={"ref_nll": [2.0, 4.0, 6.0], "ref_tokens": [1, 2, 3]})
    g = METRICS.get("perplexity").fn(given, TINY)
    assert g.aggregate["ppl"] == pytest.approx(math.exp(12 / 6)) and g.per_example["ppl"][0] == pytest.approx(math.e ** 2)


def test_bartscore_causal_variant_directions(TINY):
    b = Batch(HYPS[:2], REFS[:2])
    p = METRICS.get("bartscore").fn(b, TINY, direction="ref->hyp")
    r = METRICS.get("bartscore").fn(b, TINY, direction="hyp->ref")
    f = METRICS.get("bartscore").fn(b, TINY, direction="f")
    assert p.info["variant"] == "causal-lm" and p.aggregate["bartscore"] < 0
    assert f.per_example["bartscore"] == pytest.approx([(x + y) / 2 for x, y in zip(p.per_example["bartscore"],
                                                                                   r.per_example["bartscore"])])
    with pytest.raises(ValueError):
        METRICS.get("bartscore").fn(b, TINY, direction="sideways")


@pytest.mark.integration
@requires_minilm
def test_bertscore_equals_bert_score_library():
    import bert_score

    from empathkit.metrics.semantic import _bert_score_safe
    from empathkit.models.backbones import encoder_path

    r = METRICS.get("bertscore").fn(Batch(HYPS + [REFS[0]], REFS + [REFS[0]]), Resources())
    # the library itself needs the same guard when the checkout path contains "t5" (see _bert_score_safe)
    P, R, F = bert_score.score(HYPS + [REFS[0]], REFS + [REFS[0]], model_type=_bert_score_safe(encoder_path("minilm-l6")),
                               num_layers=5)
    assert r.per_example["bertscore-f1"] == pytest.approx(F.tolist(), abs=1e-5)
    assert r.per_example["bertscore-f1"][-1] == pytest.approx(1.0, abs=1e-4)  # identical sentences
    assert r.info["num_layers"] == 5 and r.info["rescaled"] is False
    res = METRICS.get("bertscore").fn(Batch(HYPS[:1], REFS[:1]), Resources(), rescale_with_baseline=True)
    assert res.info["rescaled"] is False and "baseline" in res.info["warning"]  # none shipped for a local folder


def test_seq2seq_bartscore_loglik_matches_model_loss(tiny_model):
    """The seq2seq path on a tiny random BART: mean token log-likelihood = −(the model's own CE loss)."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from empathkit.metrics.semantic import _seq2seq_loglik

    _, tok = tiny_model
    torch.manual_seed(0)
    cfg = BartConfig(vocab_size=len(tok), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=64,
                     pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id or 0, eos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.eos_token_id)
    bart = BartForConditionalGeneration(cfg).eval()
    src, tgt = ["a short source text"], ["and its target"]
    got = _seq2seq_loglik(bart, tok, src, tgt, batch_size=2)[0]
    enc, dec = tok(src, return_tensors="pt"), tok(tgt, return_tensors="pt")
    with torch.inference_mode():
        loss = bart(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=dec["input_ids"]).loss
    assert got == pytest.approx(-loss.item(), abs=1e-4)


def test_perplexity_reference_scores_are_shared_between_systems(TINY, monkeypatch):
    import empathkit.metrics.fluency as fl

    calls = []
    real = fl.causal_loglik
    monkeypatch.setattr(fl, "causal_loglik", lambda *a, **k: (calls.append(len(a[3])), real(*a, **k))[1])
    first = METRICS.get("perplexity").fn(Batch(HYPS, ["a brand new reference", *REFS[1:]]), TINY)
    second = METRICS.get("perplexity").fn(Batch(["other", "system", "outputs"], ["a brand new reference", *REFS[1:]]), TINY)
    assert second.aggregate["ppl"] == pytest.approx(first.aggregate["ppl"])
    assert len(calls) == 1  # the second system re-used every cached reference score


@requires_minilm
def test_bert_score_path_guard_hides_t5_substring(tmp_path):
    """bert-score would build a random T5 for any local BERT folder whose path contains "t5": we hand it a link."""
    from empathkit.metrics.semantic import _bert_score_safe
    from empathkit.models.backbones import encoder_path

    folder = tmp_path / "ci-t5-checkout"
    folder.symlink_to(encoder_path("minilm-l6"), target_is_directory=True)
    safe = _bert_score_safe(str(folder))
    assert "t5" not in safe.lower() and (Path(safe) / "config.json").is_file()
    assert _bert_score_safe(encoder_path("minilm-l6").replace("t5", "xx")) == encoder_path("minilm-l6").replace("t5", "xx")
