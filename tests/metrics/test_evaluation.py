"""Reading system outputs (JSONL / CSV / TSV / parallel text), presets, reports and the CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from empathkit.errors import DataError
from empathkit.evaluation import (Columns, evaluate, read_predictions, records_from_predictions, resolve_metrics,
                                  write_report)

ROWS = [
    {"id": "a#1", "emotion": "sad", "context": ["My cat died.", "Oh no."], "reference": "I am so sorry, that is hard.",
     "prediction": "I am sorry to hear that."},
    {"id": "b#1", "emotion": "joyful", "context": ["I got the job!"], "reference": "Congratulations, well done!",
     "prediction": "Congratulations! That is great news."},
    {"id": "c#1", "emotion": "afraid", "context": ["I heard a noise."], "reference": "That sounds scary.",
     "prediction": "That is scary, what did you do?"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_jsonl_prediction_format(tmp_path):
    recs = read_predictions(write_jsonl(tmp_path / "p.jsonl", ROWS))
    assert [r.id for r in recs] == ["a#1", "b#1", "c#1"]
    assert recs[0].context == ["My cat died.", "Oh no."] and recs[0].emotion == "sad"


def test_jsonl_errors_name_file_line_field(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_predictions(p)
    bad = dict(ROWS[1])
    del bad["reference"]
    write_jsonl(p, [ROWS[0], bad])
    with pytest.raises(DataError) as e:
        read_predictions(p)
    assert e.value.line == 2 and e.value.field == "reference"
    write_jsonl(p, [{**ROWS[0], "prediction": 3}])
    with pytest.raises(DataError, match=r":1: field 'prediction': expected a string"):
        read_predictions(p)


def test_read_csv_and_tsv_with_configured_columns(tmp_path):
    p = tmp_path / "sys.tsv"
    p.write_text("uid\tgen\tgold\thistory\n1\tI am sorry.\tSo sorry!\tMy dog is ill ||| Oh no\n2\tNice!\tGreat!\t\n")
    recs = read_predictions(p, columns=Columns(hypothesis="gen", reference="gold", context="history", id="uid"))
    assert recs[0].hypothesis == "I am sorry." and recs[0].context == ["My dog is ill", "Oh no"] and recs[1].id == "2"
    c = tmp_path / "sys.csv"
    c.write_text('response,target\n"Hi, there",Hello\n"too, many",fields,here\n')
    with pytest.raises(DataError) as e:
        read_predictions(c)
    assert e.value.line == 3 and "more fields" in str(e.value)
    with pytest.raises(DataError, match="missing hypothesis field/column 'nope'"):
        read_predictions(p, columns=Columns(hypothesis="nope"))


def test_read_parallel_text_files(tmp_path):
    h, r, c = tmp_path / "hyp.txt", tmp_path / "ref.txt", tmp_path / "ctx.txt"
    h.write_text("i am sorry\ngreat news\n")
    r.write_text("so sorry\nwonderful\n")
    c.write_text("my cat died\toh no\ni got the job\n")
    recs = read_predictions(h, references=r, contexts=c)
    assert recs[0].context == ["my cat died", "oh no"] and recs[1].reference == "wonderful"
    r.write_text("so sorry\n")
    with pytest.raises(DataError, match=r"2 hypotheses but 1 references") as e:
        read_predictions(h, references=r)
    assert e.value.line == 2


def test_basic_preset_is_bleu_rouge_l_dist12():
    res = evaluate([("s", records_from_predictions(ROWS))], preset="basic", progress=False)
    assert res.keys() == ["bleu-1", "bleu-2", "bleu-3", "bleu-4", "rouge-l", "dist-1", "dist-2"]
    assert res.runs[0].family_timings.keys() == {"lexical", "diversity"}
    assert [m for m, _ in resolve_metrics()] == ["bleu", "rouge", "dist"]  # the default


def test_metric_options_and_unknown_metric():
    from empathkit.errors import ConfigError

    ms = resolve_metrics("meteor,rouge", metric_options={"rouge": {"types": ["rouge1"]}})
    assert ms == [("meteor", {}), ("rouge", {"types": ["rouge1"]})]
    with pytest.raises(ConfigError, match="unknown metric 'blue'"):
        resolve_metrics("blue")


def test_seeds_mean_sd_and_report_files(tmp_path):
    recs = records_from_predictions(ROWS)
    worse = records_from_predictions([{**r, "prediction": "ok."} for r in ROWS])
    res = evaluate([("sys", recs), ("sys", worse), ("base", worse)], metrics="rouge", progress=False)
    summ = res.summary()
    assert summ["sys"]["rouge-l"]["n_runs"] == 2 and summ["sys"]["rouge-l"]["sd"] > 0
    assert summ["base"]["rouge-l"]["sd"] == 0.0
    out = write_report(res, tmp_path / "eval")
    md = (out / "report.md").read_text()
    assert "±" in md and "| base |" in md
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert {p.name for p in (out / "per_example").iterdir()} == {"sys.run1.jsonl", "sys.run2.jsonl", "base.jsonl"}
    line = json.loads((out / "per_example" / "base.jsonl").read_text().splitlines()[0])
    assert line["id"] == "a#1" and "rouge-l" in line
    agg = json.loads((out / "aggregates.json").read_text())
    assert agg["runs"][0]["seconds_per_family"]["lexical"] >= 0
    assert (out / "versions.json").is_file() and (out / "config.yaml").is_file()


def test_missing_resource_is_skipped_not_fatal(monkeypatch):
    from empathkit.errors import ResourceMissing
    from empathkit.metrics import METRICS
    from empathkit.metrics.base import MetricSpec

    def needs_data(batch, resources, **kw):
        raise ResourceMissing("no lexicon here")

    monkeypatch.setitem(METRICS._items, "needs-data", MetricSpec("needs-data", needs_data, "lexicon"))
    res = evaluate([("s", records_from_predictions(ROWS))], metrics="needs-data,dist", progress=False)
    assert res.runs[0].skipped == {"needs-data": "no lexicon here"}
    assert "dist-1" in res.runs[0].aggregates
    with pytest.raises(ResourceMissing):
        evaluate([("s", records_from_predictions(ROWS))], metrics="needs-data", strict=True, progress=False)


def test_cli_evaluate_default_basic_and_significance(tmp_path):
    from empathkit.cli.main import app

    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "prediction": "ok."} for r in ROWS])
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", f"good={a}", f"bad={b}", "-m", "bleu-sent", "-o", str(tmp_path / "o"),
                              "--significance", "--resamples", "200"])
    assert res.exit_code == 0, res.output
    assert "bleu-sent-4" in res.output and "paired-bootstrap" in res.output
    sig = json.loads((tmp_path / "o" / "significance.json").read_text())
    assert sig[0]["system"] == "bad" and sig[0]["delta"] < 0
    res = runner.invoke(app, ["evaluate", str(a), "-o", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    assert "dist-2" in res.output and "rouge-l" in res.output
    res = runner.invoke(app, ["evaluate", str(a), "--hyp-col", "nope", "-o", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "field 'nope'" in res.output


def test_every_metric_has_a_card_and_is_indexed():
    from pathlib import Path

    from empathkit.metrics import METRICS

    docs = Path(__file__).resolve().parents[2] / "docs" / "metrics"
    index = (docs / "README.md").read_text()
    mine = {"lexical", "diversity", "semantic", "lexicon", "fluency", "judge"}
    for name, spec in METRICS.items():
        assert f"`{name}`" in index, f"{name} missing from docs/metrics/README.md"
        if spec.family in mine:
            assert (docs / f"{name}.md").is_file(), f"no card docs/metrics/{name}.md"


def test_every_preset_resolves():
    from empathkit.evaluation import PRESETS, preset_metrics

    for p in list(PRESETS) + ["all"]:
        assert preset_metrics(p)


def test_cli_config_file_run_dir_and_list(tmp_path):
    from empathkit.cli.main import app

    run = tmp_path / "myrun"
    run.mkdir()
    (run / "config.yaml").write_text("method: prompt\n")
    write_jsonl(run / "predictions.jsonl", ROWS)
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("metrics: [rouge, dist-sent]\nmetric_options:\n  rouge: {types: [rouge1]}\n")
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(run), "-c", str(cfg)])
    assert res.exit_code == 0, res.output
    agg = json.loads((run / "eval" / "aggregates.json").read_text())
    assert agg["runs"][0]["system"] == "myrun"
    assert set(agg["runs"][0]["aggregates"]) == {"rouge-1", "dist-sent-1", "dist-sent-2", "dist-sent-3"}
    scores = json.loads((run / "scores.json").read_text())  # the run directory's scores, merged
    assert scores["rouge-1"] == pytest.approx(agg["runs"][0]["aggregates"]["rouge-1"])
    res = runner.invoke(app, ["evaluate", "--list"])
    assert res.exit_code == 0 and "bleu-moses" in res.output and "presets:" in res.output


def test_score_convenience_on_prediction_objects():
    from empathkit.evaluation import score
    from empathkit.types import Prediction

    preds = [Prediction(r["id"], r["emotion"], r["context"], r["reference"], r["prediction"]) for r in ROWS]
    agg = score(preds)
    assert set(agg) == {"bleu-1", "bleu-2", "bleu-3", "bleu-4", "rouge-l", "dist-1", "dist-2"}
    assert set(score(preds, metrics="length")) == {"length"}


def test_cli_corpus_bootstrap(tmp_path):
    from empathkit.cli.main import app

    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    b = write_jsonl(tmp_path / "b.jsonl", [{**r, "prediction": "ok ok ok"} for r in ROWS])
    res = CliRunner().invoke(app, ["evaluate", f"a={a}", f"b={b}", "-m", "dist", "-o", str(tmp_path / "o"),
                                   "--significance", "--corpus-bootstrap", "20"])
    assert res.exit_code == 0, res.output
    sig = json.loads((tmp_path / "o" / "significance.json").read_text())
    d1 = next(t for t in sig if t["metric"] == "dist-1")
    assert d1["test"] == "corpus-bootstrap" and d1["delta"] < 0 and d1["system"] == "b"


# ------------------------------------------------------------------------------------------------ one-line errors
def _known_metrics() -> str:
    from empathkit.metrics import METRICS

    return ", ".join(METRICS.names())


BAD_OPTIONS = [
    ("meteor.synonyms=bogus", "metric 'meteor': option 'synonyms' must be one of auto, never, always, got 'bogus'"),
    ("meteor.synonym=never",
     "metric 'meteor' has no option 'synonym' (did you mean 'synonyms'?); its options: synonyms, lower"),
    ("dist.ns=abc", "metric 'dist': option 'ns' expects a list, got 'abc'"),
    ("bleu.lowercase=1", "metric 'bleu': option 'lowercase' expects true or false, got 1"),
    ("blue.orders=[4]", "unknown metric 'blue' in the metric options (did you mean 'bleu'?)"),
    ("nosuch.x=1", None),  # the known names: filled in below
    ("meteor=3", "--opt meteor=3: give METRIC.OPTION=VALUE (e.g. --opt meteor.synonyms=never)"),
    ("bleu.orders=[9]", "metric 'bleu' failed with options (orders=[9]): BLEU orders must be within 1..4, got [9]"),
]


def _expected(opt: str, msg: str | None) -> str:
    return msg or f"unknown metric 'nosuch' in the metric options; known: {_known_metrics()}"


@pytest.mark.parametrize("opt,msg", [o for o in BAD_OPTIONS if o[0] != "meteor=3"])
def test_bad_metric_options_are_one_line_config_errors(opt, msg):
    from empathkit.config import apply_overrides
    from empathkit.errors import ConfigError

    options = apply_overrides({}, [opt])
    with pytest.raises(ConfigError) as e:
        evaluate([("s", records_from_predictions(ROWS))], metrics="meteor,dist,bleu", metric_options=options,
                 progress=False)
    assert str(e.value) == _expected(opt, msg)


@pytest.mark.parametrize("opt,msg", BAD_OPTIONS)
def test_cli_bad_option_exits_2_with_one_error_line(tmp_path, opt, msg):
    from empathkit.cli.main import app

    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    res = CliRunner().invoke(app, ["evaluate", str(a), "-m", "meteor,dist,bleu", "--opt", opt, "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output
    assert f"error: {_expected(opt, msg)}" in res.output.splitlines()


@pytest.mark.parametrize("args,msg", [
    (["-m", "blue"], "unknown metric 'blue' (did you mean 'bleu'?)"),
    (["-m", "ecg-lora2"], "unknown metric 'ecg-lora2' (did you mean 'ecg-lora'?)"),
    (["-p", "ecg"], "unknown preset 'ecg' (did you mean 'ecg-lora'?); known: basic, cem-paper, ecg-lora, empo, "
                    "empo-paper, kemp-paper, lee2024, moel-paper, nlpcc2025, reflectdiffu, all"),
    (["--format", "xml"], "unknown input format 'xml' (auto | jsonl | csv | tsv | text | moel | kemp | cem | mime "
                          "| empdg | empo | empathy-eval | care)"),
    (["--significance"], "--significance needs at least two systems"),
])
def test_cli_unknown_names_exit_2_with_one_error_line(tmp_path, args, msg):
    from empathkit.cli.main import app

    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    res = CliRunner().invoke(app, ["evaluate", str(a), *args, "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"error: {msg}" in res.output.splitlines()


def test_cli_bad_option_in_a_real_process_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    a = write_jsonl(tmp_path / "a.jsonl", ROWS)
    p = subprocess.run([sys.executable, "-m", "empathkit.cli.main", "evaluate", str(a), "-m", "meteor",
                        "--opt", "meteor.synonyms=bogus", "-o", str(tmp_path / "o")], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr + p.stdout
    assert p.stderr.strip().splitlines()[-1] == ("error: metric 'meteor': option 'synonyms' must be one of auto, never, "
                                                 "always, got 'bogus'")


def test_metric_raising_value_or_type_error_on_an_option_value_is_a_config_error(monkeypatch):
    from empathkit.errors import ConfigError
    from empathkit.metrics import METRICS
    from empathkit.metrics.base import MetricSpec

    def picky(batch, resources=None, mode: str = "a", k: int = 1):
        if mode != "a":
            raise ValueError(f"mode must be a, got {mode!r}\nsecond line")
        return len(batch.hypotheses) + "x"  # TypeError, but without options it is a bug: not hidden

    monkeypatch.setitem(METRICS._items, "picky", MetricSpec("picky", picky, "lexical"))
    recs = records_from_predictions(ROWS)
    with pytest.raises(ConfigError) as e:
        evaluate([("s", recs)], metrics="picky", metric_options={"picky": {"mode": "b"}}, progress=False)
    assert str(e.value) == "metric 'picky' failed with options (mode='b'): mode must be a, got 'b'"
    with pytest.raises(ConfigError, match=r"^metric 'picky' failed with options \(k=2\): unsupported operand"):
        evaluate([("s", recs)], metrics="picky", metric_options={"picky": {"k": 2}}, progress=False)
    with pytest.raises(TypeError):
        evaluate([("s", recs)], metrics="picky", progress=False)


def test_options_for_an_unselected_metric_are_ignored_with_a_warning(caplog):
    ms = resolve_metrics("rouge", metric_options={"meteor": {"synonyms": "never"}})
    assert ms == [("rouge", {})]
    assert "options for metric 'meteor' are ignored" in caplog.text


def test_significance_rejects_unknown_test_name():
    from empathkit.errors import ConfigError
    from empathkit.evaluation import significance_tests

    res = evaluate([("a", records_from_predictions(ROWS)), ("b", records_from_predictions(ROWS))], metrics="length",
                   progress=False)
    with pytest.raises(ConfigError, match=r"^unknown test 'bootstap' \(bootstrap \| permutation \| both\)$"):
        significance_tests(res, test="bootstap")


def test_jsonl_line_that_is_not_an_object_names_file_and_line(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps(ROWS[0]) + "\n\n[1, 2]\n")
    with pytest.raises(DataError) as e:
        read_predictions(p)
    assert str(e.value) == f"{p}:3: each line must be a JSON object"
    with pytest.raises(DataError, match=r"nope.jsonl: file not found"):
        read_predictions(tmp_path / "nope.jsonl")


# ------------------------------------------------------------------------------------------------ annotations
ANN = {"turns": [{"emotion_reason": [0, 1]}], "intent": "questioning", "exemplars": ["I am sorry."]}


def test_annotations_are_read_carried_and_written_untouched(tmp_path):
    rows = [{**ROWS[0], "annotations": ANN}, ROWS[1]]
    recs = read_predictions(write_jsonl(tmp_path / "p.jsonl", rows))
    assert recs[0].annotations == ANN and "annotations" not in recs[0].extra and recs[1].annotations == {}
    res = evaluate([("s", recs)], metrics="length", progress=False)
    out = write_report(res, tmp_path / "eval")
    lines = [json.loads(x) for x in (out / "per_example" / "s.jsonl").read_text().splitlines()]
    assert lines[0]["annotations"] == ANN and "annotations" not in lines[1]
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [{**ROWS[0], "annotations": "emotion=sad"}])
    with pytest.raises(DataError) as e:
        read_predictions(bad)
    assert str(e.value) == f"{bad}:1: field 'annotations': must be an object, got str"


def test_records_from_predictions_carry_prediction_annotations():
    from empathkit.types import Prediction

    r = ROWS[0]
    p = Prediction(r["id"], r["emotion"], r["context"], r["reference"], r["prediction"])
    p.annotations = dict(ANN)
    assert records_from_predictions([p])[0].annotations == ANN
    assert records_from_predictions([{**r, "annotations": ANN}])[0].annotations == ANN
    assert records_from_predictions([r])[0].annotations == {}


# ------------------------------------------------------------------------------------------------ layout
def test_public_names_and_moved_functions():
    import empathkit.evaluation as ev
    import empathkit.cli.report as cli_report

    for name in ("score", "evaluate", "read_predictions", "PRESETS", "Columns", "write_report", "table_rows",
                 "EvalResult", "resolve_metrics", "Record", "records_from_predictions", "to_batch", "SystemResult",
                 "significance_tests"):
        assert hasattr(ev, name), name
    assert not hasattr(cli_report, "make_report")  # the CLI only parses and calls empathkit.reports.run_report
    assert not hasattr(ev, "markdown_table")  # one table writer: empathkit.reports.tables


def test_unfinished_run_directory_is_named_as_such(tmp_path):
    from typer.testing import CliRunner

    from empathkit.cli.main import app
    from empathkit.runs import save_run_meta

    save_run_meta(tmp_path / "run", {"method": "prompt"}, 0)  # generate was killed before predictions.jsonl
    r = CliRunner().invoke(app, ["evaluate", str(tmp_path / "run")])
    assert r.exit_code == 2 and "generation did not finish" in r.output and "Traceback" not in r.output
