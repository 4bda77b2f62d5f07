"""EmPO preference builder: opposite-emotion rejected turns, seeded per-epoch draws, k pairs, reporting, export."""

from __future__ import annotations

import json
import logging

import pytest

from empathkit.data.emotions import PLUTCHIK_OPPOSITE
from empathkit.data.preference import PreferenceBuilder, read_jsonl, to_dataset, write_jsonl
from empathkit.data.protocols import to_examples
from empathkit.errors import DataError
from empathkit.types import Dialogue, Turn
from tests.conftest import make_dialogues, requires_data


def _many_dialogues(n_per_emotion: int = 12) -> list[Dialogue]:
    out = []
    for emo in ("joyful", "sad", "angry", "afraid"):
        for i in range(n_per_emotion):
            out.append(Dialogue(id=f"{emo}-{i}", emotion=emo, situation="s", turns=(
                Turn("speaker", f"{emo} speaker {i}"), Turn("listener", f"{emo} reply {i}"))))
    return out


def test_every_rejected_comes_from_the_opposite_emotion():
    dialogues = _many_dialogues()
    b = PreferenceBuilder.from_dialogues(dialogues, seed=3, k=2)
    by_id = {ex.id: ex for ex in b.examples}
    for epoch in range(3):
        pairs, report = b.build(epoch)
        assert report.missing == [] and len(pairs) == 2 * len(dialogues)
        for p in pairs:
            src = by_id[p.rejected_source_id]
            assert p.rejected_emotion == PLUTCHIK_OPPOSITE[p.emotion] == src.emotion
            assert p.rejected == src.target and p.chosen == by_id[p.example_id].target
            assert p.prompt[-1] == {"role": "user", "content": by_id[p.example_id].context[-1].text}


def test_draws_reproducible_per_seed_and_fresh_per_epoch():
    dialogues = _many_dialogues()
    a = PreferenceBuilder.from_dialogues(dialogues, seed=7)
    b = PreferenceBuilder.from_dialogues(dialogues, seed=7)
    src = lambda pairs: [p.rejected_source_id for p in pairs]  # noqa: E731
    assert src(a.build(0)[0]) == src(b.build(0)[0])
    assert src(a.build(2)[0]) == src(b.build(2)[0])
    assert src(a.build(0)[0]) != src(a.build(1)[0])
    assert src(a.build(0)[0]) != src(PreferenceBuilder.from_dialogues(dialogues, seed=8).build(0)[0])


def test_k_pairs_are_distinct_and_short_prompts_reported():
    b = PreferenceBuilder.from_dialogues(make_dialogues(), k=3)  # 4 dialogues per emotion → 4 candidates
    pairs, report = b.build(0)
    per_prompt: dict[str, list[str]] = {}
    for p in pairs:
        per_prompt.setdefault(p.example_id, []).append(p.rejected_source_id)
    assert all(len(v) == 3 and len(set(v)) == 3 for v in per_prompt.values())
    b5 = PreferenceBuilder.from_dialogues(make_dialogues(), k=5)
    pairs5, report5 = b5.build(0)
    assert len(pairs5) == 16 * 4 and len(report5.short) == 16 and report5.short[0]["available"] == 4


def test_no_candidate_conversations_are_reported_not_silently_dropped(caplog):
    dialogues = make_dialogues() + [
        Dialogue(id="proud-0", emotion="proud", situation="s",
                 turns=(Turn("speaker", "I won the race."), Turn("listener", "Well done!")))]
    b = PreferenceBuilder.from_dialogues(dialogues)
    with caplog.at_level(logging.WARNING):
        pairs, report = b.build(0)
    assert report.missing == [{"id": "proud-0#1", "dialogue_id": "proud-0", "emotion": "proud", "opposite": "ashamed"}]
    assert report.n_prompts == 17 and report.n_pairs == 16 == len(pairs)
    assert "1 conversation(s) have no candidate" in caplog.text and "proud→ashamed" in caplog.text


def test_separate_candidate_pool_and_system_prompt():
    train = to_examples(_many_dialogues(3), "last-listener")
    pool = to_examples([Dialogue(id="pool-sad", emotion="sad", situation="", turns=(
        Turn("speaker", "x"), Turn("listener", "pooled sad reply")))], "last-listener")
    b = PreferenceBuilder([e for e in train if e.emotion == "joyful"], candidates=pool, system_prompt="Be kind.")
    pairs, _ = b.build(0)
    assert {p.rejected for p in pairs} == {"pooled sad reply"}
    assert pairs[0].prompt[0] == {"role": "system", "content": "Be kind."}


def test_export_dataset_and_jsonl_roundtrip(tmp_path):
    b = PreferenceBuilder.from_dialogues(make_dialogues(), seed=1)
    pairs, _ = b.build(1)
    ds = to_dataset(pairs)
    assert len(ds) == len(pairs)
    for col in ("prompt", "chosen", "rejected", "emotion", "rejected_emotion", "rejected_source_id"):
        assert col in ds.column_names
    assert ds[0]["prompt"] == pairs[0].prompt
    path = write_jsonl(pairs, tmp_path / "pairs.jsonl")
    assert read_jsonl(path) == pairs
    assert json.loads(path.read_text().splitlines()[0])["epoch"] == 1


def test_bad_input_errors_name_the_field(tmp_path):
    with pytest.raises(DataError, match="k"):
        PreferenceBuilder.from_dialogues(make_dialogues(), k=0)
    exs = to_examples(make_dialogues(), "last-listener")
    with pytest.raises(DataError, match="duplicated example id"):
        PreferenceBuilder(exs + exs[:1])
    (tmp_path / "bad.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


@pytest.mark.integration
@requires_data
def test_real_ed_train_pairs_use_opposite_emotions_and_report_nothing_missing():
    from empathkit.data import load_dialogues

    b = PreferenceBuilder.from_dialogues(load_dialogues("ed", "train"), seed=0)
    pairs, report = b.build(0)
    assert report.missing == [] and len(report.pool_sizes) == 32
    assert len(pairs) == report.n_prompts > 15000
    src = {ex.id: ex.emotion for ex in b.examples}
    assert all(src[p.rejected_source_id] == PLUTCHIK_OPPOSITE[p.emotion] for p in pairs)
