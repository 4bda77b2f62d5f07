"""The annotated JSONL store: record format, read_annotated checks, resume after a kill without duplicates."""

from __future__ import annotations

import json

import pytest

from empathkit.annotate.store import AnnotatedWriter, default_annotated_path, read_annotated, read_meta
from empathkit.errors import DataError
from empathkit.types import Dialogue, Turn, TurnAnnotation


def annotated(d: Dialogue) -> Dialogue:
    turns = []
    for t in d.turns:
        toks = tuple(t.text.split())
        if t.role == "speaker":
            tags = tuple("<em>" if w.strip("!.,").lower() in ("wanted", "passed", "scratched") else "<noem>" for w in toks)
            ann = TurnAnnotation(tokens=toks, reason_tags=tags, annotator="test@1")
        else:
            ann = TurnAnnotation(tokens=toks, reason_tags=("<noem>",) * len(toks), intent="acknowledging",
                                 annotator="test@1")
        turns.append(Turn(t.role, t.text, ann))
    return Dialogue(d.id, d.emotion, d.situation, tuple(turns), d.split)


def test_default_path_in_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path))
    assert default_annotated_path() == tmp_path / "annotate" / "ed-lexicon.jsonl"
    assert default_annotated_path("era").name == "ed-era.jsonl"


def test_write_read_round_trip(dialogues, tmp_path):
    p = tmp_path / "a.jsonl"
    with AnnotatedWriter(p, "test@1") as w:
        for d in dialogues:
            w.write(annotated(d))
        w.close({"counts": {"annotated_turns": 3, "skipped_turns": {"empty": 1}}})
    back = read_annotated(p)
    assert [d.id for d in back] == [d.id for d in dialogues]
    sp = back[0].turns[0].annotation
    assert sp.tokens[:2] == ("I", "finally") and "<em>" in sp.reason_tags
    assert back[0].turns[1].annotation.intent == "acknowledging"
    assert json.loads(p.read_text().splitlines()[0])["annotator"] == "test@1"
    assert read_meta(p)["counts"] == {"annotated_turns": 3, "skipped_turns": {"empty": 1}}
    assert read_annotated(p, split="valid") == []


def test_resume_after_kill_truncates_partial_line_no_duplicates(dialogues, tmp_path):
    p = tmp_path / "a.jsonl"
    w = AnnotatedWriter(p, "test@1")
    for d in dialogues[:5]:
        w.write(annotated(d))
    w._f.write('{"id": "joyful-')  # a kill in the middle of a line
    w._f.flush()
    w._f.close()
    w2 = AnnotatedWriter(p, "test@1")
    assert w2.resumed == 5 and w2.truncated_bytes > 0
    for d in dialogues:
        if d.id not in w2.done:
            w2.write(annotated(d))
    w2.close({"counts": {}})
    ids = [d.id for d in read_annotated(p)]
    assert sorted(ids) == sorted(d.id for d in dialogues) and len(ids) == len(set(ids))
    with pytest.raises(DataError, match="already in the file"):
        AnnotatedWriter(p, "test@1").write(annotated(dialogues[0]))


def test_resume_refuses_other_annotator(dialogues, tmp_path):
    p = tmp_path / "a.jsonl"
    w = AnnotatedWriter(p, "test@1")
    w.write(annotated(dialogues[0]))
    w.close({"counts": {}})
    with pytest.raises(DataError, match="written by 'test@1'"):
        AnnotatedWriter(p, "other@2")
    assert AnnotatedWriter(p, "other@2", overwrite=True).resumed == 0


@pytest.mark.parametrize("mutate, field", [
    (lambda o: o["turns"][0].pop("annotation"), "turns[0].annotation"),
    (lambda o: o["turns"][1]["annotation"].update(reason_tags=["<em>"] * len(o["turns"][1]["annotation"]["tokens"])),
     "turns[1].annotation.reason_tags"),
    (lambda o: o["turns"][1]["annotation"].pop("intent"), "turns[1].annotation.intent"),
    (lambda o: o["turns"][0]["annotation"]["reason_tags"].pop(), "turns[0].annotation.reason_tags"),
])
def test_read_annotated_names_line_and_field(dialogues, tmp_path, mutate, field):
    p = tmp_path / "a.jsonl"
    with AnnotatedWriter(p, "test@1") as w:
        w.write(annotated(dialogues[0]))
        w.write(annotated(dialogues[1]))
    lines = p.read_text().splitlines()
    obj = json.loads(lines[1])
    mutate(obj)
    p.write_text(lines[0] + "\n" + json.dumps(obj) + "\n")
    with pytest.raises(DataError) as e:
        read_annotated(p)
    assert f"{p}:2:" in str(e.value) and field in str(e.value)
