"""The ED release reader on tiny written fixtures: decoding, ordering, roles, and errors naming file/line/field."""

from __future__ import annotations

import tarfile

import pytest

from empathkit.data import ed, load_dialogues
from empathkit.data.protocols import to_examples
from empathkit.errors import DataError

HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


def write(tmp_path, name, body, header=HEADER):
    p = tmp_path / name
    p.write_bytes((header + body).encode("utf-8") if isinstance(body, str) else header.encode() + body)
    return p


def test_decodes_commas_orders_turns_and_assigns_roles_by_parity(tmp_path):
    # rows deliberately out of order; speaker_idx is a worker id (not a role) as in the original release
    write(tmp_path, "train.csv",
          "c1,2,sad,My dog_comma_ Rex_comma_ died.,77,Oh no_comma_ I am sorry.,,\n"
          "c1,1,sad,My dog_comma_ Rex_comma_ died.,12,My dog died today.,,\n"
          "c1,3,sad,My dog_comma_ Rex_comma_ died.,12,Thanks.,,\n"
          "c2,1,joyful,Won a prize,5,I won!,,,extra|candidate|column\n"
          "c2,2,joyful,Won a prize,9,Congrats!,,\n")
    d = ed.read_split(tmp_path, "train")
    assert [x.id for x in d] == ["c1", "c2"]
    c1 = d[0]
    assert c1.situation == "My dog, Rex, died."
    assert [t.text for t in c1.turns] == ["My dog died today.", "Oh no, I am sorry.", "Thanks."]
    assert [t.role for t in c1.turns] == ["speaker", "listener", "speaker"]
    every = to_examples(d, "every-listener")
    last = to_examples(d, "last-listener")
    assert [e.target for e in every] == ["Oh no, I am sorry.", "Congrats!"]
    assert [e.target for e in last] == ["Oh no, I am sorry.", "Congrats!"]
    assert [t.text for t in every[0].context] == ["My dog died today."]


def test_every_vs_last_listener_and_max_history(dialogues):
    every = to_examples(dialogues, "every-listener")
    last = to_examples(dialogues, "last-listener")
    # 8 dialogues of 4 turns (2 listener turns) + 8 of 3 turns (1 listener turn)
    assert len(every) == 8 * 2 + 8 and len(last) == 16
    four = [e for e in every if e.dialogue_id == "joyful-0"]
    assert [len(e.context) for e in four] == [1, 3]
    short = to_examples(dialogues[:1], "every-listener", max_history=1)
    assert [len(e.context) for e in short] == [1, 1] and short[1].context[0].text == dialogues[0].turns[2].text


def test_reads_tar_archive(tmp_path):
    src = tmp_path / "src" / "empatheticdialogues"
    src.mkdir(parents=True)
    write(src, "test.csv", "c1,1,afraid,Dark night,0,I heard a noise.,,\nc1,2,afraid,Dark night,1,Are you ok?,,\n")
    arch = tmp_path / "empatheticdialogues.tar.gz"
    with tarfile.open(arch, "w:gz") as tar:
        tar.add(src, arcname="empatheticdialogues")
    d = load_dialogues(str(arch), "test")
    assert len(d) == 1 and d[0].turns[1].text == "Are you ok?"


@pytest.mark.parametrize("body,header,line,field,msg", [
    ("c1,1,sad,x,0,hi,,\n", "conv_id,utterance_idx,prompt,speaker_idx,utterance\n", 1, "context", "missing column"),
    ("c1,1,sad,x,0,hi,,\nc1,2,hungry,x,1,hello,,\n", HEADER, 3, "context", "unknown emotion"),
    ("c1,one,sad,x,0,hi,,\n", HEADER, 2, "utterance_idx", "integer"),
    ("c1,1,sad,x,0,hi,,\nc1,1,sad,x,0,hi again,,\n", HEADER, 3, "utterance_idx", "duplicated turn"),
    ("c1,1,sad,x,0,hi,,\nc1,2,angry,x,1,hello,,\n", HEADER, 3, "context", "changes emotion"),
])
def test_bad_input_names_file_line_field(tmp_path, body, header, line, field, msg):
    p = write(tmp_path, "valid.csv", body, header=header)
    with pytest.raises(DataError) as ei:
        ed.read_split(tmp_path, "valid")
    e = ei.value
    assert e.file == str(p) and e.line == line and e.field == field and msg in str(e)
    assert str(e).startswith(f"{p}:{line}: field '{field}'")


def test_broken_encoding_and_empty_file(tmp_path):
    write(tmp_path, "train.csv", b"c1,1,sad,x,0,caf\xe9 \xff,,\n")
    with pytest.raises(DataError, match=r"train.csv:2: not valid UTF-8"):
        ed.read_split(tmp_path, "train")
    (tmp_path / "test.csv").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        ed.read_split(tmp_path, "test")
    (tmp_path / "valid.csv").write_text(HEADER)
    with pytest.raises(DataError, match="no rows"):
        ed.read_split(tmp_path, "valid")


def test_missing_split_and_path(tmp_path):
    with pytest.raises(DataError, match="no train.csv"):
        ed.read_split(tmp_path, "train")
    with pytest.raises(DataError, match="unknown split"):
        ed.read_split(tmp_path, "dev")


def test_write_then_read_roundtrip(tmp_path, dialogues):
    ed.write_split(dialogues, tmp_path / "train.csv")
    back = ed.read_split(tmp_path, "train")
    assert [(d.id, d.emotion, d.situation, d.turns) for d in back] == \
           [(d.id, d.emotion, d.situation, d.turns) for d in dialogues]
