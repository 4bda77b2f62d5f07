"""Encoder–decoder backbones, the seq2seq generator's input format and the Fusion-in-Decoder building block
(the shared Generator contract of ``seq2seq`` and its FiD variant runs in test_contract.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from empathkit.api import load_generator
from empathkit.errors import ConfigError, ResourceMissing
from empathkit.models.backbones import ALIASES, cached_backbone, is_encoder_decoder, load_backbone
from empathkit.models.fid import fid_forward, fid_score, fuse, target_ids
from empathkit.models.generation import GenerationSettings
from empathkit.types import Controls, ExampleAnnotations, Exemplar

SAMPLED = GenerationSettings(max_new_tokens=8, batch_size=4, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
CONV = [{"role": "user", "content": "My sister is visiting!"}, {"role": "assistant", "content": "Nice!"},
        {"role": "user", "content": "We will go hiking."}]
EXEMPLARS = (Exemplar("e1", "That sounds so hard, I am sorry."), Exemplar("e2", "How lovely, enjoy the hike!"),
             Exemplar("e3", "Oh no, what happened next?"))


pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def t5():
    return cached_backbone("tiny-random-t5")


@pytest.fixture(scope="module")
def seq2seq():
    return load_generator("seq2seq", model_config={"backbone": "tiny-random-t5"})


@pytest.fixture(scope="module")
def fid():
    return load_generator("seq2seq", model_config={"backbone": "tiny-random-t5", "fusion": "fid",
                                                   "max_exemplars": 2})


@pytest.fixture(scope="module")
def examples():
    from empathkit.data.protocols import to_examples
    from empathkit.testing import make_dialogues

    return to_examples(make_dialogues(), "every-listener")[:4]


# -- backbones ---------------------------------------------------------------------------------------------------------
def test_tiny_t5_backbone(t5):
    model, tok = t5
    assert is_encoder_decoder(model) and type(model).__name__ == "T5ForConditionalGeneration"
    assert model.config.d_model == 64 and model.config.num_layers == 2
    assert tok.pad_token_id != tok.eos_token_id == model.config.eos_token_id
    assert model.config.decoder_start_token_id == tok.pad_token_id
    ids = tok("hello there")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok("hello there", add_special_tokens=False)["input_ids"] == ids[:-1]
    again, _ = load_backbone("tiny-random-t5")  # seeded: the same weights every time
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_causal_backbone_still_causal():
    model, _ = load_backbone("tiny-random-llama")
    assert not is_encoder_decoder(model)


def test_seq2seq_aliases_and_offline_message(tmp_path):
    assert ALIASES.get("flan-t5-base") == "google/flan-t5-base"
    assert {"t5-small", "bart-base", "flan-t5-small"} <= set(ALIASES.names())
    with pytest.raises(ResourceMissing, match="could not load model"):
        load_backbone(str(tmp_path))  # a folder without a model


def test_saved_folder_loads_as_seq2seq(t5, tmp_path):
    model, tok = t5
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    again, tok2 = load_backbone(str(tmp_path))
    assert is_encoder_decoder(again) and tok2("hi")["input_ids"] == tok("hi")["input_ids"]
    assert tok2.pad_token_id == tok.pad_token_id


def test_seq2seq_rejects_a_decoder_only_backbone():
    with pytest.raises(ConfigError, match="decoder-only"):
        load_generator("seq2seq", model_config={"backbone": "tiny-random-llama"})


def test_seq2seq_is_registered_without_training():
    from empathkit.methods import METHODS

    assert METHODS.get("seq2seq").train is None


# -- input format ------------------------------------------------------------------------------------------------------
def test_source_format(seq2seq):
    g = seq2seq
    text = g.source(CONV, Controls(emotion="joyful"), None)
    assert text == (f"{g.config.instruction} The user feels joyful.\n\n"
                    "User: My sister is visiting!\nAssistant: Nice!\nUser: We will go hiking.\nAssistant:")
    own = g.source([{"role": "system", "content": "Be brief."}] + CONV, Controls(emotion="joyful"), None)
    assert own.startswith("Be brief.\n\nUser: My sister")  # the conversation's system message replaces the prefix
    assert g.source(CONV, Controls(situation="A trip."), None) == g.source(CONV, Controls(), None)  # use_situation off


def test_source_fits_from_the_oldest_turns(seq2seq):
    g = seq2seq
    full = g.source(CONV, Controls(), None)
    budget = g.count_tokens(g.source(CONV[2:], Controls(), None))
    fitted = g.source(CONV, Controls(), budget)
    assert fitted != full and fitted.endswith("User: We will go hiking.\nAssistant:") and "sister" not in fitted
    long = [{"role": "user", "content": "word " * 300 + "the very end."}]
    cut = g.source(long, Controls(), 64)
    assert cut.endswith("the very end.\nAssistant:") and g.count_tokens(cut) <= 64 + 2


# -- Fusion-in-Decoder -------------------------------------------------------------------------------------------------
def test_fuse_concatenates_passage_states(t5):
    model, tok = t5
    rows = [["one short passage", "a second, slightly longer passage here"], ["only one"]]
    enc, mask, lengths = fuse(model, tok, rows)
    n = [len(tok(p)["input_ids"]) for p in rows[0]]
    assert lengths == [sum(n), len(tok("only one")["input_ids"])]
    assert enc.last_hidden_state.shape == (2, sum(n), model.config.d_model)
    assert mask.tolist()[1] == [1] * lengths[1] + [0] * (sum(n) - lengths[1])
    with torch.no_grad():  # each passage is encoded on its own
        alone = model.get_encoder()(**tok([rows[0][1]], return_tensors="pt")).last_hidden_state[0]
    assert torch.allclose(enc.last_hidden_state[0, n[0]:], alone, atol=1e-5)


def test_compact_layout_equals_padded_layout(t5):
    """Cross-attention has no positions: fused real tokens give the decoder what the padded FiD layout gives."""
    model, tok = t5
    rows = [["short", "a much longer second passage with more words"]]
    enc, mask, _ = fuse(model, tok, rows)
    batch = tok(rows[0], return_tensors="pt", padding=True, padding_side="right")
    with torch.no_grad():
        h = model.get_encoder()(**batch).last_hidden_state  # (2, L, d), the original FiD layout: N × L
        padded = h.reshape(1, -1, h.shape[-1])
        pmask = batch["attention_mask"].reshape(1, -1)
        dec = torch.tensor([[tok.pad_token_id, 11, 12, 13]])
        a = model(encoder_outputs=(enc.last_hidden_state,), attention_mask=mask, decoder_input_ids=dec).logits
        b = model(encoder_outputs=(padded,), attention_mask=pmask, decoder_input_ids=dec).logits
    assert torch.allclose(a, b, atol=1e-4)


def test_target_ids_end_with_eos(t5):
    _, tok = t5
    ids = target_ids(tok, "thanks a lot")
    assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
    assert len(target_ids(tok, "word " * 50, max_tokens=8)) == 8


def test_fid_without_exemplars_is_plain_seq2seq(seq2seq, fid, examples):
    plain = seq2seq.chat([CONV], SAMPLED)[0]
    fused = fid.chat([CONV], SAMPLED)[0]
    assert fused.text == plain.text and fused.info == {"exemplars": []}
    assert [s.nll for s in fid.score(examples)] == pytest.approx([s.nll for s in seq2seq.score(examples)], rel=1e-5)


def test_fid_uses_and_reports_exemplars(fid, examples):
    with_ex = fid.chat([CONV], SAMPLED, [Controls(exemplars=EXEMPLARS)])[0]
    assert with_ex.info["exemplars"] == ["e1", "e2"]  # max_exemplars: 2
    plain = fid.score(examples[:1])[0]
    assert fid.score(examples[:1], [Controls(exemplars=EXEMPLARS)])[0].nll != plain.nll
    annotated = [dataclasses.replace(ex, annotations=ExampleAnnotations(exemplars=EXEMPLARS[2:])) for ex in examples]
    preds = fid.generate(annotated, SAMPLED, progress=False)
    assert all(p.extra["exemplars"] == ["e3"] for p in preds)
    assert preds[0].settings["fusion"] == "fid" and preds[0].settings["method"] == "seq2seq-fid"


def test_fid_passages_put_the_exemplar_first(fid):
    src = fid.source(CONV, Controls(), None)
    ps = fid.passages(src, Controls(exemplars=EXEMPLARS[:2]))
    assert ps == [f"Exemplar: {EXEMPLARS[0].response}\n{src}", f"Exemplar: {EXEMPLARS[1].response}\n{src}"]


def test_fid_teacher_forcing_trains():
    """The loss reaches encoder and decoder, and a few steps on one target lower its NLL (REG trains this way)."""
    model, tok = load_backbone("tiny-random-t5")
    model.train()
    rows, target = [["Exemplar: so sorry\nUser: I lost my keys.\nAssistant:", "User: I lost my keys.\nAssistant:"]], \
        ["That is awful, I am sorry."]
    before = fid_score(model.eval(), tok, rows, target)[0]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(3):
        out, labels = fid_forward(model, tok, rows, target)
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            assert model.encoder.block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0
            assert labels.shape == (1, len(target_ids(tok, target[0])))
        opt.step()
    after = fid_score(model.eval(), tok, rows, target)[0]
    assert after.tokens == before.tokens and after.nll < before.nll


def test_causal_training_refuses_an_encoder_decoder_backbone():
    from empathkit.errors import ConfigError
    from empathkit.training.backbone import load_base
    from empathkit.training.config import LMModelConfig

    with pytest.raises(ConfigError, match="encoder–decoder model.*seq2seq"):
        load_base(LMModelConfig(backbone="tiny-random-t5"))
