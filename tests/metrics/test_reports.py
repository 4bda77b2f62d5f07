"""Per-emotion tables and plots (bar, radar, strategy shift) on tiny written results."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from empathkit.errors import ConfigError
from empathkit.evaluation import evaluate, records_from_predictions
from empathkit.reports import plots
from empathkit.reports.tables import (breakdown_table, html_table, markdown_table, per_emotion, per_emotion_corpus,
                                      rows_from_result)

ROWS = [
    {"id": "1", "emotion": "sad", "reference": "I am so sorry.", "prediction": "I am so sorry.", "context": ["x"]},
    {"id": "2", "emotion": "sad", "reference": "That is awful.", "prediction": "Oh no.", "context": ["x"]},
    {"id": "3", "emotion": "joyful", "reference": "Congrats, well done!", "prediction": "Congrats!", "context": ["y"]},
]


def result():
    a = records_from_predictions(ROWS)
    b = records_from_predictions([{**r, "prediction": "ok"} for r in ROWS])
    return evaluate([("a", a), ("b", b)], metrics="rouge,dist-sent,length", progress=False)


def test_per_emotion_means_and_counts():
    rows = [{"emotion": "sad", "m": 1.0}, {"emotion": "sad", "m": 0.0}, {"emotion": "joyful", "m": 0.5},
            {"emotion": "joyful", "m": None}]
    assert per_emotion(rows, "m") == {"joyful": (0.5, 1), "sad": (0.5, 2)}
    with pytest.raises(ConfigError, match="no per-example values for 'bleu-4'"):
        per_emotion(rows, "bleu-4")


def test_breakdown_table_side_by_side():
    md = breakdown_table(rows_from_result(result()), "rouge-l")
    lines = md.splitlines()
    assert lines[2].startswith("| emotion | n | a | b |")
    sad = next(ln for ln in lines if ln.startswith("| sad "))
    assert sad.split("|")[2].strip() == "2"
    assert "| all |" in md
    assert "<table>" in breakdown_table(rows_from_result(result()), "rouge-l", fmt="html")


def test_the_one_table_writer():
    assert markdown_table(["a", "b"], [["x", 1], ["y", 2.5]]) == "| a | b |\n|---|---|\n| x | 1 |\n| y | 2.5 |"
    assert markdown_table(["a", "b", "c"], [], align="lrr").splitlines()[1] == "|---|---:|---:|"
    with pytest.raises(ValueError, match="align"):
        markdown_table(["a", "b"], [], align="l")
    assert html_table(["<h>"], [["a & b"]]) == ("<table>\n<thead><tr><th>&lt;h&gt;</th></tr></thead>\n"
                                                "<tbody><tr><td>a &amp; b</td></tr></tbody>\n</table>")


def test_per_emotion_corpus_reruns_corpus_metric():
    recs = records_from_predictions(ROWS)
    pe = per_emotion_corpus(recs, "dist", "dist-1")
    assert set(pe) == {"sad", "joyful"} and pe["sad"][1] == 2


def test_plots_write_files(tmp_path):
    res = result()
    keys = ["rouge-1", "rouge-l", "dist-sent-1", "length"]
    assert plots.bar_chart(res, keys, tmp_path / "bars.png").stat().st_size > 1000
    assert plots.radar_chart(res, keys, tmp_path / "radar.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="no system has nope"):
        plots.bar_chart(res, ["nope"], tmp_path / "x.png")


def test_radar_normalisation_flips_lower_is_better():
    summ = {"a": {"x": 1.0, "y": 10.0, "z": 3.0}, "b": {"x": 3.0, "y": 10.0, "z": 1.0}}
    v = plots.radar_values(summ, ["x", "y", "z"], lower_is_better=["z"])
    assert v == {"a": [0.0, 0.5, 0.0], "b": [1.0, 0.5, 1.0]}


def test_strategy_shift_chart_from_scores_and_results(tmp_path):
    p = plots.strategy_shift_chart({"LoRA": {"er": 0.4, "ip": 0.3, "ex": 0.5}, "ECG-LoRA": {"er": 0.5, "ip": 0.35, "ex": 0.4}},
                                   tmp_path / "shift.png")
    assert p.is_file()
    agg = {"summary": {"s": {f"emp-f1-{d}": {"mean": 0.5, "sd": 0} for d in ("er", "ip", "ex")}}}
    assert plots.strategy_scores(agg) == {"s": {"er": 0.5, "ip": 0.5, "ex": 0.5}}
    assert plots.level_shares({"er": [0, 1, 2, 0]}) == {"er": 0.5}
    with pytest.raises(ConfigError, match="no EPITOME strategy scores"):
        plots.strategy_shift_chart(result(), tmp_path / "none.png")


def test_cli_by_emotion_plots_and_run_scores(tmp_path):
    from empathkit.cli.main import app

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("method: prompt\n")
    (run / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({**r, "prediction": "ok"}) + "\n" for r in ROWS))
    r = CliRunner().invoke(app, ["evaluate", str(run / "predictions.jsonl"), "-m", "rouge,length", "--by-emotion", "rouge-l"])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "scores.json").read_text())["rouge-l"] > 0
    assert "rouge-l by emotion" in (run / "eval" / "report.md").read_text()
    r = CliRunner().invoke(app, ["evaluate", f"a={run / 'predictions.jsonl'}", f"b={other}", "-m", "rouge,length",
                                 "--plots", "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "cmp" / "plots" / "radar.png").is_file() and (tmp_path / "cmp" / "plots" / "bars.png").is_file()
