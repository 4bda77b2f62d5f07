"""ReflectDiffu decoding guards, beam width from the shared settings, and the loop diagnostics
(empathkit/methods/reflectdiffu/decoding.py, diagnostics.py). Hand-built fake decoders and tiny random models."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from empathkit.methods.reflectdiffu import diagnostics
from empathkit.methods.reflectdiffu.decoding import (
    banned_ngram_tokens,
    beam_width,
    decode,
    ngram_size,
)
from empathkit.methods.reflectdiffu.vocab import EOS_ID, SPECIALS, Vocab
from empathkit.models.generation import GenerationSettings

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")

VOCAB = Vocab(list(SPECIALS) + ["a", "b", "c", "d", "e"])  # word ids 5..9
A, B = 5, 6


class BeamSettings(GenerationSettings):
    """GenerationSettings with the field asked of the coordinator (no_repeat_ngram_size)."""

    no_repeat_ngram_size: int = 0


class FakeDecoder:
    """next_logprobs from a table keyed by the tokens after SOS (default: ``default``)."""

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], default: dict[int, float]):
        self.table, self.default = table, default

    def next_logprobs(self, st, dec):
        out = torch.full((dec.shape[0], dec.shape[1], len(VOCAB)), -1e4)
        for r, row in enumerate(dec.tolist()):
            key = tuple(t for t in row[1:] if t != 0)
            for t, p in self.table.get(key, self.default).items():
                out[r, -1, t] = math.log(p)
        return out


def _run(model, s, **kw):
    return decode(model, {"x": torch.zeros(1, 1)}, VOCAB, [[]], s, [torch.Generator()], [0], **kw)[0]


def test_banned_ngram_tokens():
    assert banned_ngram_tokens([5, 6, 5], 2) == {6}  # "5 6" exists, the prefix is 5
    assert banned_ngram_tokens([5, 5, 5], 1) == {5}
    assert banned_ngram_tokens([5, 6, 7, 5, 6], 3) == {7}
    assert banned_ngram_tokens([5, 6], 3) == set() and banned_ngram_tokens([5, 6], 0) == set()


def test_no_repeat_ngram_breaks_a_greedy_loop():
    # the decoder always prefers "a", then "b", then "c": greedy loops "a a a …"
    model = FakeDecoder({}, {A: 0.5, B: 0.3, 7: 0.15, EOS_ID: 0.05})
    s = GenerationSettings(max_new_tokens=6, repetition_penalty=1.0)
    toks, _ = _run(model, s)
    assert toks == ["a"] * 6
    toks, _ = _run(model, s, no_repeat_ngram=2)
    bigrams = list(itertools.pairwise(toks))
    assert len(bigrams) == len(set(bigrams)) and len(toks) == 6
    # the settings' own field, when GenerationSettings has it, overrides the model default
    toks, _ = _run(model, BeamSettings(max_new_tokens=6, repetition_penalty=1.0, no_repeat_ngram_size=1), no_repeat_ngram=0)
    assert len(set(toks)) == len(toks)


def test_beam_width_is_read_from_the_settings_when_present():
    assert beam_width(GenerationSettings(), 2) == 2 and beam_width(GenerationSettings(num_beams=4), 2) == 4
    assert beam_width(GenerationSettings(num_beams=1), 3) == 1  # set explicitly: greedy although the model says 3
    assert ngram_size(GenerationSettings(), 3) == 3 and ngram_size(BeamSettings(no_repeat_ngram_size=2), 0) == 2
    # greedy takes "a" (0.5) and then has only flat continuations; beam 2 finds "b" EOS (0.4 * 0.9)
    flat = {t: 1 / 6 for t in (EOS_ID, 5, 6, 7, 8, 9)}
    model = FakeDecoder({(): {A: 0.5, B: 0.4, 7: 0.1}, (A,): flat}, {EOS_ID: 0.9, 8: 0.1})
    s = GenerationSettings(max_new_tokens=4, repetition_penalty=1.0)
    assert _run(model, s)[0] == ["a"]
    assert _run(model, GenerationSettings(max_new_tokens=4, repetition_penalty=1.0, num_beams=2)) == (["b"], "stop")
    assert _run(model, s, num_beams=2) == (["b"], "stop")  # the model option when the settings leave num_beams


def test_unigram_entropy_and_loop_rate_by_hand():
    train = [["a", "b"], ["a"]]  # counts a 2, b 1, <eos> 2; add-one over 3 types: total 5 + 3
    want = -(2 * math.log(3 / 8) + math.log(2 / 8) + 2 * math.log(3 / 8)) / 5
    assert diagnostics.unigram_entropy(train) == pytest.approx(want)
    assert diagnostics.is_loop(["i", "i", "i"]) and diagnostics.is_loop(["so", "sad", "so", "sad", "so", "sad"])
    assert not diagnostics.is_loop(["i", "am", "so", "sorry", "to", "hear", "that"])
    assert diagnostics.loop_rate(["i i i i", "that is great", "oh no !"]) == pytest.approx(1 / 3)


def test_a_tiny_decoder_is_causal_and_fits_a_fixed_batch_below_unigram_entropy():
    """The loop checks on a real (tiny) network: no leak from future inputs; trained on one fixed batch the response
    loss falls far below the unigram cross-entropy and the teacher-forced argmax is not one token."""
    from empathkit.data.protocols import to_examples
    from empathkit.methods.reflectdiffu.config import RDModelConfig
    from empathkit.methods.reflectdiffu.features import Featurizer, collate
    from empathkit.methods.reflectdiffu.model import ReflectDiffu, refer_mask_from_map
    from empathkit.methods.reflectdiffu.sources import UniformPrior
    from empathkit.methods.reflectdiffu.vocab import build_vocab
    from empathkit.testing import make_dialogues

    cfg = RDModelConfig(emb_dim=32, heads=2, enc_layers=1, dec_layers=1, ff_dim=64, dropout=0.0, use_era=False,
                        use_c_experts=False, use_intent_twice=False, use_emu=False, intent_prior="uniform")
    exs = to_examples(make_dialogues(), "every-listener")[:8]
    f = Featurizer(Vocab(list(SPECIALS)), None, UniformPrior(), 32, 12)
    items = f.example_items(exs)
    v = build_vocab([it.tokens + it.target for it in items], size=200)
    b = collate(items, v)
    torch.manual_seed(0)
    m = ReflectDiffu(cfg, len(v), None, refer_mask_from_map({}))
    before, after = diagnostics.causal_leak(m, b)
    assert before < 1e-5 < after
    h = diagnostics.unigram_entropy([it.target for it in items], vocab_size=len(v))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(80):
        loss = m.losses(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    tf = diagnostics.teacher_forced(m, b)
    assert tf["L_res"] < 0.3 * h
    assert tf["distinct_argmax"] > 3 and tf["accuracy"] > 0.8
    assert 0.0 <= tf["p_gen_min"] <= tf["p_gen_mean"] <= tf["p_gen_max"] <= 1.0
    assert m.training
