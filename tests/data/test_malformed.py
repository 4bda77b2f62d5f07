"""The malformed-input corpus of the readers: every case is a written fixture (no dataset text) with the exact
error (file:line:field and reason) or the counted warning it must give. Nothing is changed silently: the valid
variants are read with the dialogue and turn counts compared with what the fixture holds."""

from __future__ import annotations

import gzip
import io
import json
import logging
import tarfile

import pytest

from empathkit.data import ed, jsonl
from empathkit.errors import DataError

HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
GOOD = "c1,1,sad,My dog died,1,I lost my dog.,,\nc1,2,sad,My dog died,2,I am so sorry.,,\n"

# (id, body after the header or the whole file (bytes), line, field, reason fragment)
ED_ERRORS = [
    ("raw comma in prompt", "c1,1,sad,My dog, Rex died,1,I lost him.,,\n", 2, "speaker_idx", "_comma_"),
    ("raw comma in utterance", "c1,1,sad,Dog died,1,Oh no, I am sorry.,,\n", 2, "selfeval", "_comma_"),
    ("raw comma, short header", (b"conv_id,utterance_idx,context,prompt,utterance\n"
                                 b"c1,1,sad,Dog died,Oh no, sorry\n"), 2, None, "_comma_"),
    ("empty utterance", GOOD + "c1,3,sad,My dog died,1,,,\n", 4, "utterance", "empty utterance"),
    ("whitespace utterance", "c1,1,sad,Dog died,1,   ,,\n", 2, "utterance", "empty utterance"),
    ("_comma_ only is not empty but spaces are", "c1,1,sad,Dog died,1, _comma_ ,,\nc1,2,sad,Dog died,2,\t,,\n", 3,
     "utterance", "empty utterance"),
    ("NUL in utterance", "c1,1,sad,Dog died,1,I lost\x00him.,,\n", 2, "utterance", "NUL"),
    ("NUL in prompt", "c1,1,sad,Dog\x00died,1,I lost him.,,\n", 2, "prompt", "NUL"),
    ("NUL only", "c1,1,sad,Dog died,1,\x00,,\n", 2, "utterance", "NUL"),
    ("negative utterance_idx", GOOD + "c1,-2,sad,My dog died,1,Before all.,,\n", 4, "utterance_idx", "between 1"),
    ("zero utterance_idx", "c1,0,sad,Dog died,1,Hi.,,\n", 2, "utterance_idx", "between 1"),
    ("huge utterance_idx", GOOD + "c1,100000000000000000000,sad,My dog died,1,Late.,,\n", 4, "utterance_idx",
     "between 1"),
    ("float utterance_idx", GOOD + "c1,1e20,sad,My dog died,1,Late.,,\n", 4, "utterance_idx", "integer"),
    ("fractional utterance_idx", "c1,1.5,sad,Dog died,1,Hi.,,\n", 2, "utterance_idx", "integer"),
    ("word utterance_idx", "c1,one,sad,Dog died,1,Hi.,,\n", 2, "utterance_idx", "integer"),
    ("repeated utterance_idx", GOOD + "c1,2,sad,My dog died,2,Again.,,\n", 4, "utterance_idx", "line 3"),
    ("unknown emotion", "c1,1,meh,Dog died,1,Hi.,,\n", 2, "context", "unknown emotion"),
    ("emotion changes", GOOD + "c1,3,joyful,My dog died,1,Yay.,,\n", 4, "context", "changes emotion"),
    ("empty conv_id", ",1,sad,Dog died,1,Hi.,,\n", 2, "conv_id", "empty conv_id"),
    ("too few fields", "c1,1,sad,Dog died\n", 2, None, "expected 8"),
    ("speaker_idx not a number", "c1,1,sad,Dog died,abc,Hi.,,\n", 2, "speaker_idx", "integer"),
    ("selfeval with text", "c1,1,sad,Dog died,1,Hi.,great job,\n", 2, "selfeval", "5|5|5_2|2|5"),
    ("missing column", b"conv_id,utterance_idx,context,prompt\nc1,1,sad,x\n", 1, "utterance", "missing column"),
    ("empty file", b"", 1, None, "file is empty"),
    ("header only", HEADER.encode(), 2, None, "no rows"),
    ("invalid UTF-8", HEADER.encode() + b"c1,1,sad,Dog,1,caf\xe9 bad,,\n", 2, None, "UTF-8"),
]


def _write_csv(tmp_path, body) -> None:
    raw = body if isinstance(body, bytes) else (HEADER + body).encode("utf-8")
    (tmp_path / "train.csv").write_bytes(raw)


@pytest.mark.parametrize("case, body, line, field, reason", ED_ERRORS, ids=[c[0] for c in ED_ERRORS])
def test_ed_reader_errors(tmp_path, case, body, line, field, reason):
    _write_csv(tmp_path, body)
    with pytest.raises(DataError) as ei:
        ed.read_split(tmp_path, "train")
    e = ei.value
    assert (e.file, e.line, e.field) == (str(tmp_path / "train.csv"), line, field), str(e)
    assert reason in str(e) and "\n" not in str(e)


def _tar(tmp_path, members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("case", ["random bytes", "truncated", "gzip of not a tar", "no test.csv", "empty"])
def test_ed_archive_errors_are_one_line(tmp_path, case):
    good = _tar(tmp_path, {"empatheticdialogues/test.csv": (HEADER + GOOD).encode()})
    data = {"random bytes": b"\x00\x01not an archive at all" * 10, "truncated": good[: len(good) // 2],
            "gzip of not a tar": gzip.compress(b"hello world" * 50),
            "no test.csv": _tar(tmp_path, {"empatheticdialogues/train.csv": (HEADER + GOOD).encode()}),
            "empty": b""}[case]
    arch = tmp_path / "empatheticdialogues.tar.gz"
    arch.write_bytes(data)
    with pytest.raises(DataError) as ei:
        ed.read_split(arch, "test")
    assert ei.value.file == str(arch) and "\n" not in str(ei.value)
    assert ("no test.csv" in str(ei.value)) if case == "no test.csv" else ("not a readable archive" in str(ei.value))


def _counts(dialogues) -> tuple[int, int]:
    return len(dialogues), sum(len(d.turns) for d in dialogues)


def test_ed_gaps_are_a_counted_named_warning_and_keep_every_row(tmp_path, caplog):
    _write_csv(tmp_path, GOOD + "c1,4,sad,My dog died,2,Later.,,\n"
               "c2,2,afraid,Noise,1,Who is there?,,\nc2,3,afraid,Noise,2,Only me.,,\n")
    with caplog.at_level(logging.WARNING, logger="empathkit.data.ed"):
        d = ed.read_split(tmp_path, "train")
    assert _counts(d) == (2, 5)  # every row kept
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "2 conversation(s) have gaps" in msg and "c1, c2" in msg
    assert [t.role for t in d[0].turns] == ["speaker", "listener", "listener"]  # 1, 2, 4: parity


@pytest.mark.parametrize("case, body, counts", [
    ("extra candidate columns", GOOD.replace("sorry.,,\n", "sorry.,,,cand one|cand two,more\n"), (1, 2)),
    ("CRLF line endings", GOOD.replace("\n", "\r\n"), (1, 2)),
    ("selfeval in release format", GOOD.replace("dog.,,", "dog.,5|5|5_2|2|5,"), (1, 2)),
    ("_comma_ decoded", "c1,1,sad,Dog_comma_ Rex,1,Oh_comma_ no.,,\n", (1, 1)),
    ("blank lines skipped", GOOD + "\n\n", (1, 2)),
])
def test_ed_valid_variants_keep_every_row(tmp_path, case, body, counts):
    _write_csv(tmp_path, body)
    d = ed.read_split(tmp_path, "train")
    assert _counts(d) == counts
    if case == "_comma_ decoded":
        assert d[0].situation == "Dog, Rex" and d[0].turns[0].text == "Oh, no."


# -- JSONL -------------------------------------------------------------------------------------------------------------

T = [{"role": "speaker", "text": "I lost my job."}, {"role": "listener", "text": "I am sorry."}]


def D(**kw) -> dict:
    return {"id": "d1", "emotion": "sad", "situation": "Lost my job", "turns": T, "split": "test"} | kw


def _deep(n: int) -> str:
    return "[" * n + "]" * n


# (id, line text of line 2 (line 1 is a good dialogue), field, reason fragment)
JSONL_ERRORS = [
    ("unknown split", json.dumps(D(split="tets")), "split", "did you mean 'test'"),
    ("split in capitals", json.dumps(D(split="Train")), "split", "did you mean 'train'"),
    ("split not a string", json.dumps(D(split=1)), "split", "string"),
    ("empty text", json.dumps(D(turns=[{"role": "speaker", "text": ""}])), "turns[0].text", "empty"),
    ("whitespace text", json.dumps(D(turns=T + [{"role": "speaker", "text": " \n\t"}])), "turns[2].text", "empty"),
    ("NUL text", json.dumps(D(turns=[{"role": "speaker", "text": "\x00"}])), "turns[0].text", "NUL"),
    ("text not a string", json.dumps(D(turns=[{"role": "speaker", "text": 5}])), "turns[0].text", "string"),
    ("null id", json.dumps(D(id=None)), "id", "string"),
    ("boolean id", json.dumps(D(id=True)), "id", "string"),
    ("empty id", json.dumps(D(id=" ")), "id", "empty"),
    ("float id", json.dumps(D(id=1.5)), "id", "string"),
    ("NaN situation", json.dumps(D(situation=float("nan"))), "situation", "not a finite number"),
    ("Infinity in a turn", json.dumps(D(turns=[{"role": "speaker", "text": float("inf")}])), "turns[0].text",
     "not a finite number"),
    ("NaN in an annotation", json.dumps(D(turns=[{"role": "speaker", "text": "x", "annotation": {
        "tokens": ["x"], "reason_tags": [float("nan")]}}])), "turns[0].annotation.reason_tags[0]", "finite"),
    ("typo situaton", json.dumps({k: v for k, v in D().items() if k != "situation"} | {"situaton": "x"}),
     "situaton", "did you mean 'situation'"),
    ("typo in a turn", json.dumps(D(turns=[{"role": "speaker", "txt": "x", "text": "y"}])), "turns[0].txt",
     "did you mean 'text'"),
    ("unknown annotation key", json.dumps(D(turns=[{"role": "speaker", "text": "x", "annotation": {"intnet": "a"}}])),
     "turns[0].annotation.intnet", "did you mean 'intent'"),
    ("profile typo", json.dumps(D(profile={"problem": "x"})), "profile.problem", "did you mean 'problem_type'"),
    ("deep nesting in a field", json.dumps(D(extra=json.loads(_deep(12)))), "extra[0][0][0][0][0][0][0][0]",
     "nested deeper"),
    ("deep nesting past the JSON parser", '{"id": "d2", "x": ' + _deep(100_000) + "}", None, "nested deeper"),
    ("empty turns", json.dumps(D(turns=[])), "turns", "non-empty"),
    ("turns not a list", json.dumps(D(turns="hello")), "turns", "list"),
    ("bad role", json.dumps(D(turns=[{"role": "bot", "text": "x"}])), "turns[0].role", "'speaker'"),
    ("missing emotion", json.dumps({k: v for k, v in D().items() if k != "emotion"}), "emotion", "missing"),
    ("missing turns", json.dumps({k: v for k, v in D().items() if k != "turns"}), "turns", "missing"),
    ("emotion a number", json.dumps(D(emotion=3)), "emotion", "string"),
    ("unknown emotion", json.dumps(D(emotion="meh")), "emotion", "unknown emotion"),
    ("situation a number", json.dumps(D(situation=3)), "situation", "string"),
    ("tags not aligned", json.dumps(D(turns=[{"role": "speaker", "text": "x", "annotation": {
        "tokens": ["a", "b"], "reason_tags": ["<em>"]}}])), "turns[0].annotation.reason_tags", "1 reason tags"),
    ("unknown tag", json.dumps(D(turns=[{"role": "speaker", "text": "x", "annotation": {
        "tokens": ["a"], "reason_tags": ["<x>"]}}])), "turns[0].annotation.reason_tags", "unknown reason tag"),
    ("not an object", "[1, 2]", None, "JSON object"),
    ("invalid JSON", '{"id": "d2",', None, "invalid JSON"),
    ("duplicated id", json.dumps(D(id="d0")), "id", "duplicated dialogue id"),
]


@pytest.mark.parametrize("case, line2, field, reason", JSONL_ERRORS, ids=[c[0] for c in JSONL_ERRORS])
def test_jsonl_reader_errors(tmp_path, case, line2, field, reason):
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(D(id="d0")) + "\n" + line2 + "\n", encoding="utf-8")
    with pytest.raises(DataError) as ei:
        jsonl.read_jsonl(p, "test")
    e = ei.value
    assert (e.file, e.line, e.field) == (str(p), 2, field), str(e)
    assert reason in str(e) and "\n" not in str(e)


@pytest.mark.parametrize("case, raw, reason", [
    ("empty file", b"", "file is empty"), ("blank lines only", b"\n \n", "file is empty"),
    ("invalid UTF-8", b'{"id": "caf\xe9"}\n', "UTF-8"),
])
def test_jsonl_file_errors(tmp_path, case, raw, reason):
    p = tmp_path / "d.jsonl"
    p.write_bytes(raw)
    with pytest.raises(DataError, match=reason):
        jsonl.read_jsonl(p)


def test_jsonl_missing_file_and_unknown_requested_split(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        jsonl.read_jsonl(tmp_path / "nope.jsonl")
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps(D()) + "\n")
    with pytest.raises(DataError, match=r"unknown split 'tset' \(train, valid, test\)"):
        jsonl.read_jsonl(p, "tset")


def test_a_dialogue_without_split_is_in_the_default_split_only(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [D(id="a", split="train"), {k: v for k, v in D(id="b").items() if k != "split"}, D(id="c", split=None),
            D(id="d", split="")]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [d.id for d in jsonl.read_jsonl(p, "test")] == ["b", "c", "d"]
    assert [d.id for d in jsonl.read_jsonl(p, "train")] == ["a"]
    with pytest.raises(DataError) as ei:
        jsonl.read_jsonl(p, "valid")
    assert "no dialogue has split 'valid'" in str(ei.value) and "test: 3, train: 1" in str(ei.value)
    assert ei.value.field == "split"
    assert _counts(jsonl.read_jsonl(p)) == (4, 8)  # every dialogue, once


def test_jsonl_valid_variants_keep_everything(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [D(id=7), D(id="b", emotion=" Sad "), D(id="c", turns=T + [{"role": "speaker", "text": "  padded  "}],
                                                   profile={"problem_type": "job"})]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    ds = jsonl.read_jsonl(p, "test")
    assert _counts(ds) == (3, 7)
    assert ds[0].id == "7" and ds[1].emotion == "sad" and ds[2].turns[-1].text == "padded"
    assert ds[2].profile == {"problem_type": "job"}
    back = tmp_path / "back.jsonl"
    jsonl.write_jsonl(ds, back)
    assert [(d.id, d.turns, d.split, d.profile) for d in jsonl.read_jsonl(back)] == [
        (d.id, d.turns, d.split, d.profile) for d in ds]
