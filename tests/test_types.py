"""Annotations travel from a JSONL file through protocols to predictions; Controls merge; Reply / TokenScore."""

from __future__ import annotations

import json

import pytest

from empathkit.errors import DataError
from empathkit.types import Controls, Exemplar, TurnAnnotation


def _write(tmp_path, turns):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"id": "a", "emotion": "sad", "situation": "s", "turns": turns}) + "\n")
    return p


def test_annotations_round_trip_reader_protocol_prediction(tmp_path):
    from empathkit.data.jsonl import read_jsonl, write_jsonl
    from empathkit.data.protocols import to_examples
    from empathkit.types import Prediction

    ann = {"tokens": ["my", "cat", "died"], "reason_tags": ["<noem>", "<noem>", "<em>"], "annotator": "lexicon@1"}
    p = _write(tmp_path, [{"role": "speaker", "text": "my cat died", "annotation": ann},
                          {"role": "listener", "text": "I am sorry.", "annotation": {"intent": "consoling"}}])
    (d,) = read_jsonl(p)
    assert d.turns[0].annotation.reason_tags == ("<noem>", "<noem>", "<em>")
    write_jsonl([d], tmp_path / "again.jsonl")
    assert read_jsonl(tmp_path / "again.jsonl")[0].turns[0].annotation == d.turns[0].annotation
    (ex,) = to_examples([d], "last-listener")
    assert ex.annotations.target.intent == "consoling"
    assert Controls.from_example(ex).intent == "consoling"
    row = Prediction.from_example(ex, "so sorry").to_json()
    assert row["annotations"]["context"][0]["reason_tags"][2] == "<em>"
    assert row["annotations"]["target"] == {"intent": "consoling"}


def test_prediction_without_annotations_keeps_the_old_row_shape(dialogues):
    from empathkit.data.protocols import to_examples
    from empathkit.types import Prediction

    ex = to_examples(dialogues[:1], "last-listener")[0]
    assert "annotations" not in Prediction.from_example(ex, "x").to_json()


@pytest.mark.parametrize("ann, field, msg", [
    ({"tokens": ["a", "b"], "reason_tags": ["<em>"]}, "reason_tags", "1 reason tags for 2 tokens"),
    ({"tokens": ["a"], "reason_tags": ["<emo>"]}, "reason_tags", "unknown reason tag"),
    ({"intnet": "x"}, "annotation", "unknown field; did you mean 'intent'"),
    ({"tokens": "a b"}, "tokens", "valid list"),
])
def test_bad_annotations_name_file_line_and_field(tmp_path, ann, field, msg):
    from empathkit.data.jsonl import read_jsonl

    p = _write(tmp_path, [{"role": "speaker", "text": "a b", "annotation": ann}, {"role": "listener", "text": "ok"}])
    with pytest.raises(DataError, match=msg) as e:
        read_jsonl(p)
    assert f"{p}:1" in str(e.value) and field in str(e.value)


def test_controls_merge_and_exemplar_json():
    from empathkit.methods.base import controls_list, merge_controls

    base = Controls(emotion="sad", emotion_source="gold", situation="s")
    merged = merge_controls(base, Controls(gate=0.2))
    assert (merged.emotion, merged.gate, merged.situation) == ("sad", 0.2, "s")
    assert merge_controls(base, Controls(emotion="joyful")).emotion == "joyful"
    assert controls_list(2, None) == [Controls(), Controls()]
    with pytest.raises(ValueError):
        controls_list(2, [None])
    e = Exemplar("train#3", "That must hurt.", ("my dog is ill",), 0.8, {"sentiment": "low"})
    assert Exemplar.from_json(json.loads(json.dumps(e.to_json()))) == e
    assert TurnAnnotation.from_json(TurnAnnotation(intent="wishing").to_json()).intent == "wishing"
