"""The annotation pipeline: record contents, counts, a SIGKILLed run resumed without duplicates, the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _annotate_fakes import FixedIntents, KeywordTagger

from empathkit.annotate.pipeline import Annotator, annotate
from empathkit.annotate.store import read_annotated, read_meta
from empathkit.types import Dialogue, Turn


def test_records_counts_and_intent_map(dialogues, tmp_path):
    empty = Dialogue("empty", "sad", "", (Turn("speaker", ""), Turn("listener", "Oh?")), "train")
    p = tmp_path / "a.jsonl"
    rep = annotate(dialogues + [empty], Annotator(KeywordTagger(), FixedIntents(), "kw"), p, progress=False,
                   batch_size=5)
    assert rep.written == 16 and rep.skipped_turns == {"empty text": 1}
    assert rep.skipped_dialogues == {"empty turn text": 1}
    ds = {d.id: d for d in read_annotated(p)}
    sp, li = ds["sad-0"].turns[0].annotation, ds["sad-0"].turns[1].annotation
    assert sp.tokens[-3:] == ("passed", "away", "yesterday") or "passed" in sp.tokens
    assert sp.reason_tags[sp.tokens.index("passed")] == "<em>" and sp.annotator == "kw@1" and sp.intent is None
    assert set(li.reason_tags) == {"<noem>"} and li.intent == "acknowledging" and li.annotator == "fixed@1"
    assert "empty" not in ds and ds["sad-1"].turns[1].annotation.intent == "acknowledging"
    assert rep.annotated_turns == sum(len(d.turns) for d in dialogues)
    meta = read_meta(p)
    assert meta["annotator"] == "kw@1+fixed@1" and meta["counts"]["skipped_turns"] == {"empty text": 1}
    imap = p.with_name("a.intent-map.json")
    assert imap.is_file() and imap.with_suffix(".png").is_file()


KILL_SCRIPT = """
import sys
sys.path.insert(0, {here!r})
from _annotate_fakes import KeywordTagger, FixedIntents
from empathkit.annotate.pipeline import Annotator, annotate
from empathkit.testing import make_dialogues
annotate(make_dialogues(), Annotator(KeywordTagger(), FixedIntents(delay=0.15), "kw"), {out!r}, batch_size=1,
         progress=False, derive_map=False)
"""


def test_killed_run_resumes_without_duplicates(dialogues, tmp_path):
    out = tmp_path / "a.jsonl"
    here = str(Path(__file__).resolve().parent)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT.format(here=here, out=str(out))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = out.read_text().count("\n")
    assert 4 <= done_before < len(dialogues), proc.stderr.read().decode()[-500:]
    assert read_meta(out)["annotator"] == "kw@1+fixed@1"  # written at start, so a killed run still names it
    rep = annotate(dialogues, Annotator(KeywordTagger(), FixedIntents(), "kw"), out, progress=False)
    assert rep.resumed == done_before and rep.written == len(dialogues) - done_before
    ids = [d.id for d in read_annotated(out)]
    assert sorted(ids) == sorted(d.id for d in dialogues) and len(set(ids)) == len(ids)


def test_cli_annotate_on_jsonl(dialogues, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import empathkit.annotate.pipeline as pl
    from empathkit.cli.main import app
    from empathkit.data.jsonl import write_jsonl

    src = tmp_path / "d.jsonl"
    write_jsonl(dialogues, src)
    monkeypatch.setattr(pl, "build_annotator", lambda name, **kw: Annotator(KeywordTagger(), FixedIntents(), name))
    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(app, ["annotate", "--source", str(src), "--splits", "train", "--out", str(out),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "annotated turns" in r.output and len(read_annotated(out)) == 16
    r2 = CliRunner().invoke(app, ["annotate", "--source", str(src), "--splits", "train", "--out", str(out),
                                  "--no-progress"])
    assert "already annotated" in r2.output and "16" in r2.output
    monkeypatch.undo()
    r3 = CliRunner().invoke(app, ["annotate", "--annotator", "bogus", "--source", str(src)])
    assert r3.exit_code == 2 and "unknown annotator" in r3.output


def test_unknown_annotator_one_line_error():
    from empathkit.annotate.pipeline import build_annotator
    from empathkit.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown annotator 'x'"):
        build_annotator("x")
