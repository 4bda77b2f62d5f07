"""Resumable ``generate``: an interrupted run resumes where it stopped, with no duplicate and exactly the outputs of
an uninterrupted run (sampling, seeded); user errors about run directories are one line, never a traceback."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from empathkit.api import run_generate
from empathkit.cli.main import app
from empathkit.data import jsonl
from empathkit.errors import ConfigError, DataError
from empathkit.methods.causal import CausalLMGenerator

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


@pytest.fixture
def cfg(tmp_path, dialogues):
    src = tmp_path / "d.jsonl"
    jsonl.write_jsonl([dataclasses.replace(d, split="test") for d in dialogues], src)
    return {"method": "prompt", "seed": 3, "output_dir": str(tmp_path / "runs"),
            "model": {"backbone": "tiny-random-llama", "template": "plain"},
            "data": {"source": str(src), "split": "test"},
            "generation": {"max_new_tokens": 5, "do_sample": True, "temperature": 1.0, "top_p": 1.0, "batch_size": 4}}


def rows(run_dir):
    return [json.loads(x) for x in (run_dir / "predictions.jsonl").read_text().splitlines()]


class Crash(Exception):
    pass


def crash_on_call(monkeypatch, cfg, n: int) -> None:
    """Run ``generate`` with ``CausalLMGenerator.generate`` raising on its ``n``-th chunk, then restore it."""
    calls = {"n": 0}
    real = CausalLMGenerator.generate

    def crashing(self, examples, *a, **kw):
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash
        return real(self, examples, *a, **kw)

    monkeypatch.setattr(CausalLMGenerator, "generate", crashing)
    with pytest.raises(Crash):
        run_generate(cfg, progress=False, chunk_size=4)
    monkeypatch.setattr(CausalLMGenerator, "generate", real)


def test_an_interrupted_generate_resumes_with_the_uninterrupted_outputs(cfg, monkeypatch):
    whole = rows(run_generate(cfg, progress=False, chunk_size=4))
    assert len(whole) == 24 and len({r["id"] for r in whole}) == 24

    crash_on_call(monkeypatch, cfg, 4)
    (run_dir,) = [d for d in Path(cfg["output_dir"]).iterdir() if not (d / "predictions.jsonl").exists()]
    partial = run_dir / "predictions.partial.jsonl"
    assert len(partial.read_text().splitlines()) == 12 and not (run_dir / "predictions.jsonl").exists()
    # the crash also cut the next chunk mid-way: two complete rows and a half-written one
    more = [json.dumps({"id": r["id"], "prediction": "stale"}) for r in whole[12:14]]
    partial.write_text(partial.read_text() + "\n".join(more) + "\n" + '{"id": "x", "predic')

    r = CliRunner().invoke(app, ["generate", "--resume", str(run_dir)])
    assert r.exit_code == 0, r.output
    resumed = rows(run_dir)
    assert [x["id"] for x in resumed] == [x["id"] for x in whole]  # no duplicate, nothing lost, same order
    assert [x["prediction"] for x in resumed] == [x["prediction"] for x in whole]  # the stale chunk was redone
    assert not partial.exists()
    r = CliRunner().invoke(app, ["generate", "--resume", str(run_dir)])  # complete: nothing to do
    assert r.exit_code == 0 and rows(run_dir) == resumed


def test_resume_refuses_predictions_of_other_examples(cfg, tmp_path, monkeypatch):
    crash_on_call(monkeypatch, cfg, 2)
    (run_dir,) = list((tmp_path / "runs").iterdir())
    partial = run_dir / "predictions.partial.jsonl"
    lines = partial.read_text().splitlines()
    lines[1] = json.dumps(json.loads(lines[1]) | {"id": "someone-else"})
    partial.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as ei:
        run_generate(resume=run_dir, progress=False)
    assert ei.value.line == 2 and ei.value.field == "id" and "changed since the run started" in str(ei.value)


@pytest.mark.parametrize("case, content, message", [
    ("missing dir", None, "no such run directory"),
    ("no config", "", "is not a run directory (no config.yaml)"),
    ("empty config", "   \n", "empty config"),
    ("invalid YAML", "method: prompt\n  bad: [unclosed\n", "not valid YAML"),
    ("a list", "- method\n- prompt\n", "must be a mapping"),
    ("binary", b"\xff\xfe\x00garbage", "not valid UTF-8"),
])
def test_generate_run_dir_errors_are_one_line(tmp_path, case, content, message):
    run = tmp_path / "run"
    if content is not None:
        run.mkdir()
        if case != "no config":
            p = run / "config.yaml"
            p.write_bytes(content if isinstance(content, bytes) else content.encode())
    for args in (["generate", "--run", str(run)], ["generate", "--resume", str(run)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, r.output


def test_resume_needs_a_generate_run_and_no_other_options(tmp_path, cfg):
    run = tmp_path / "trained"
    run.mkdir()
    (run / "config.yaml").write_text("method: sft\n")
    r = CliRunner().invoke(app, ["generate", "--resume", str(run)])
    assert r.exit_code == 2 and "not a resumable generate run" in r.output
    r = CliRunner().invoke(app, ["generate", "--resume", str(run), "--limit", "3"])
    assert r.exit_code == 2 and "drop --limit" in r.output
    with pytest.raises(ConfigError, match="no such run directory"):
        run_generate(resume=tmp_path / "nope")
