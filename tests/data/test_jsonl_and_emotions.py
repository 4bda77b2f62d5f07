from __future__ import annotations

import json
import logging

import pytest

from empathkit.data import emotions, jsonl, subsample
from empathkit.data.protocols import to_examples
from empathkit.errors import DataError


def test_jsonl_roundtrip_with_profile(tmp_path, dialogues):
    d0 = dialogues[0]
    from dataclasses import replace

    withp = [replace(d0, profile={"emotion_type": "anxiety", "problem_type": "job crisis"})] + dialogues[1:]
    p = tmp_path / "d.jsonl"
    jsonl.write_jsonl(withp, p)
    back = jsonl.read_jsonl(p)
    assert back[0].profile == {"emotion_type": "anxiety", "problem_type": "job crisis"}
    assert [d.turns for d in back] == [d.turns for d in withp]


@pytest.mark.parametrize("obj,field,msg", [
    ({"emotion": "sad", "turns": [{"role": "speaker", "text": "x"}]}, "id", "missing"),
    ({"id": "a", "emotion": "meh", "turns": [{"role": "speaker", "text": "x"}]}, "emotion", "unknown emotion"),
    ({"id": "a", "emotion": "sad", "turns": [{"role": "bot", "text": "x"}]}, "turns[0].role", "speaker"),
    ({"id": "a", "emotion": "sad", "turns": [{"role": "speaker", "text": "x"}], "profile": {"age": 3}}, "profile.age", "unknown"),
])
def test_jsonl_errors_name_line_and_field(tmp_path, obj, field, msg):
    p = tmp_path / "bad.jsonl"
    good = {"id": "ok", "emotion": "sad", "turns": [{"role": "speaker", "text": "fine"}]}
    p.write_text(json.dumps(good) + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(DataError) as ei:
        jsonl.read_jsonl(p)
    assert ei.value.line == 2 and ei.value.field == field and msg in str(ei.value)


def test_jsonl_invalid_json_and_duplicate_id(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a", "emotion": "sad", "turns": [{"role": "speaker", "text": "x"}]}\n{not json}\n')
    with pytest.raises(DataError, match=r"x.jsonl:2: invalid JSON"):
        jsonl.read_jsonl(p)
    line = '{"id": "a", "emotion": "sad", "turns": [{"role": "speaker", "text": "x"}]}\n'
    p.write_text(line + line)
    with pytest.raises(DataError, match="duplicated dialogue id"):
        jsonl.read_jsonl(p)


def test_emotion_tables_are_complete_and_consistent():
    assert len(emotions.EMOTIONS) == 32 == len(set(emotions.EMOTIONS))
    assert set(emotions.PLUTCHIK_OPPOSITE) == set(emotions.EMOTIONS)
    assert set(emotions.PLUTCHIK_OPPOSITE.values()) <= set(emotions.EMOTIONS)
    assert emotions.opposite("Sad") == "joyful" and emotions.opposite("guilty") == "proud"
    assert len(emotions.POSITIVE_EMOTIONS) == 15 and len(emotions.NEGATIVE_EMOTIONS) == 17
    assert emotions.polarity("furious") == "negative" and emotions.polarity("content") == "positive"
    assert emotions.gradient_group("furious") == "negative-high"
    assert emotions.gradient_group("excited") == "positive-high"
    assert emotions.gradient_group("sentimental") == "subtle"
    assert emotions.emotion_id("surprised") == 0 and emotions.emotion_id("faithful") == 31
    with pytest.raises(DataError, match="unknown emotion"):
        emotions.emotion_id("bored")


def test_vad_lexicon_reader(tmp_path):
    p = tmp_path / "vad.txt"
    p.write_text("term\tvalence\tarousal\tdominance\nsad\t-0.5\t-0.3\t-0.7\nfurious\t-0.9\t0.9\t0.2\n")
    lex = emotions.load_vad_lexicon(str(p))
    assert emotions.emotion_vad("sad", lex) == (-0.5, -0.3, -0.7)
    assert emotions.arousal_group("furious", lex) == "high" and emotions.arousal_group("sad", lex) == "low"
    p2 = tmp_path / "bad.txt"
    p2.write_text("term\tvalence\tarousal\tdominance\nsad\tx\t1\t1\n")
    with pytest.raises(DataError, match=r"bad.txt:2"):
        emotions.load_vad_lexicon(str(p2))


def test_subsample_is_seeded_and_stratified(dialogues):
    exs = to_examples(dialogues, "every-listener")
    a, b = subsample(exs, 8, seed=1), subsample(exs, 8, seed=1)
    assert [e.id for e in a] == [e.id for e in b] and len(a) == 8
    strat = subsample(exs, 8, seed=1, stratify_by_emotion=True)
    from collections import Counter

    assert set(Counter(e.emotion for e in strat).values()) == {2}


def test_no_listener_dialogue_is_reported(caplog, dialogues):
    from dataclasses import replace

    lone = replace(dialogues[0], id="lonely-speaker", turns=dialogues[0].turns[:1])
    with caplog.at_level(logging.WARNING):
        exs = to_examples([lone, dialogues[1]], "last-listener")
    assert len(exs) == 1 and "lonely-speaker" in caplog.text
