"""ERA: first-sub-word packing for pytorch-crf, decode round trip, reason states, save/load (tiny random BERT)."""

from __future__ import annotations

import pytest
import torch

from empathkit.annotate.era.model import ERA, first_subword_positions, pack_first_subwords, tiny_random_era

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture(scope="module")
def era():
    return tiny_random_era(seed=0)


def test_first_subword_positions_skip_special_and_pieces():
    # [CLS] un ##believ ##able day [SEP] [PAD]
    assert first_subword_positions([None, 0, 0, 0, 1, None, None], 2) == [1, 4]
    assert first_subword_positions([None, 0, None], 3) == [1, -1, -1]  # words 1, 2 truncated


def test_packing_is_left_aligned_and_mask_starts_on():
    h = torch.arange(2 * 6 * 1, dtype=torch.float).view(2, 6, 1)
    packed, mask, slots = pack_first_subwords(h, [[1, 3, 4], [-1, 2, -1]])
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert packed[0, :, 0].tolist() == [1.0, 3.0, 4.0]
    assert packed[1, 0, 0].item() == 8.0  # row 1, position 2
    assert slots == [[0, 1, 2], [1]]
    # a row without words keeps a dummy first slot so pytorch-crf accepts the batch
    _, mask2, slots2 = pack_first_subwords(h, [[-1, -1], [1, -1]])
    assert mask2[:, 0].all() and slots2 == [[], [0]]


def test_word_pieces_and_leading_special_token(era):
    words = [["I", "was", "unbelievably", "heartbroken", "!"], ["ok"]]
    enc = era.tokenizer(words, is_split_into_words=True, padding=True)
    assert enc.word_ids(0)[0] is None  # [CLS] leads
    assert len(enc["input_ids"][0]) > len(words[0]) + 2  # word pieces
    em, mask, slots, _ = era.emissions(words)
    assert mask[:, 0].all() and mask.sum(1).tolist() == [5, 1]
    assert all(m.tolist() == sorted(m.tolist(), reverse=True) for m in mask)  # contiguous
    tags = era.tag(words)
    assert [len(t) for t in tags] == [5, 1] and set(sum(tags, [])) <= {"<em>", "<noem>"}


def test_decode_round_trip_after_fitting(era):
    """A few steps on one sentence make Viterbi decoding return its gold tags per word (pieces, [CLS] included)."""
    torch.manual_seed(0)
    m = tiny_random_era(seed=1)
    words = [["I", "felt", "heartbroken", "and", "lonely", "."], ["Thanks", "a", "lot"]]
    gold = [["<noem>", "<noem>", "<em>", "<noem>", "<em>", "<noem>"], ["<noem>"] * 3]
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.train()
    for _ in range(40):
        opt.zero_grad()
        loss = m.loss(words, gold)
        loss.backward()
        opt.step()
    assert m.tag(words) == gold


def test_reason_states_per_word_and_truncation(era):
    words = [["so", "happy"], ["x"] * 100]  # the second exceeds max_length=64 word pieces
    h, mask = era.reason_states(words)
    assert h.shape == (2, 100, era.dim) and mask.shape == (2, 100)
    assert mask[0].tolist()[:3] == [True, True, False]
    assert mask[1].sum().item() == 62 and not mask[1, -1]  # 64 minus [CLS] and [SEP]
    assert torch.all(h[0, 2:] == 0)
    assert era.tag(words)[1][-1] == "<noem>"


def test_empty_turn_in_batch(era):
    out = era.tag([[], ["fine"]])
    assert out[0] == [] and out[1] == era.tag([["fine"]])[0]
    h, mask = era.reason_states([[], ["fine"]])
    assert mask.tolist() == [[False], [True]]


def test_save_load_same_tags_and_states(era, tmp_path):
    words = [["I", "am", "terrified", "of", "heights"]]
    era.save(tmp_path / "era")
    back = ERA.load(tmp_path / "era")
    assert back.tag(words) == era.tag(words)
    era.eval()
    with torch.no_grad():
        a, _ = era.reason_states(words)
        b, _ = back.reason_states(words)
    assert torch.allclose(a, b, atol=1e-6)
    assert back.dim == era.dim == 32 and back.annotator.startswith("era@")


def test_load_missing_names_the_fix(tmp_path):
    from empathkit.errors import ResourceMissing

    with pytest.raises(ResourceMissing, match="annotate"):
        ERA.load(tmp_path / "nothing")
