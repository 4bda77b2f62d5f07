"""Human-evaluation kit: stratified blinded sheets, aggregation into win/tie/lose, Fleiss' kappa."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from empathkit.errors import DataError
from empathkit.evaluation import Record
from empathkit.humaneval import aggregate, export_sheets, fleiss_kappa, stratified_sample

EMOS = ["sad", "joyful", "afraid"]


def systems():
    base = [Record(id=f"e{i}", hypothesis=f"alpha reply {i}", reference="r", context=[f"turn {i}"], emotion=EMOS[i % 3])
            for i in range(12)]
    other = [Record(id=r.id, hypothesis=f"beta reply {r.id}", reference="r", context=r.context, emotion=r.emotion)
             for r in base]
    return {"alpha-sys": base, "beta-sys": other}


def test_stratified_sample_round_robin():
    s = stratified_sample({"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}, 5, seed=3)
    assert sorted(x[0] for x in s) == ["a", "a", "b", "c", "c"]
    assert s == stratified_sample({"a": ["a1", "a2", "a3"], "b": ["b1"], "c": ["c1", "c2"]}, 5, seed=3)


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as reproduced on Wikipedia: 10 items, 14 raters, 5 categories → κ ≈ 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa([[2, 0], [0, 2]]) == pytest.approx(1.0)


def test_export_is_blinded_stratified_and_randomised(tmp_path):
    out = export_sheets(systems(), tmp_path / "he", mode="ab", n=6, annotators=2, seed=1)
    key = json.loads((out / "key.json").read_text())
    emotions = [v["emotion"] for v in key["items"].values()]
    assert sorted(emotions) == sorted(EMOS * 2)  # 6 examples, 2 per emotion
    assert {v["A"] for v in key["items"].values()} == {"alpha-sys", "beta-sys"}  # both sides occur as A
    for f in ("annotator_1.csv", "annotator_2.csv", "form.html"):
        text = (out / f).read_text()
        assert "alpha-sys" not in text and "beta-sys" not in text
    rows1 = list(csv.DictReader((out / "annotator_1.csv").open()))
    rows2 = list(csv.DictReader((out / "annotator_2.csv").open()))
    assert {r["item"] for r in rows1} == {r["item"] for r in rows2} == set(key["items"])
    assert [r["item"] for r in rows1] != [r["item"] for r in rows2]  # each annotator has their own order
    assert list(rows1[0]) == ["item", "context", "response_a", "response_b", "empathy", "relevance", "fluency"]


def fill(path, key, choose):
    rows = list(csv.DictReader(path.open()))
    for r in rows:
        for a in ("empathy", "relevance", "fluency"):
            r[a] = choose(key["items"][r["item"]], a)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_aggregate_ab_win_tie_lose_and_kappa(tmp_path):
    out = export_sheets(systems(), tmp_path / "he", mode="ab", n=6, annotators=3, seed=0)
    key = json.loads((out / "key.json").read_text())
    alpha = lambda k, a: "A" if k["A"] == "alpha-sys" else "B"  # noqa: E731
    for i in (1, 2):
        fill(out / f"annotator_{i}.csv", key, alpha)
    fill(out / "annotator_3.csv", key, lambda k, a: "tie" if a == "fluency" else alpha(k, a))
    res = aggregate([out / f"annotator_{i}.csv" for i in (1, 2, 3)], out / "key.json", tmp_path / "res")
    emp = res["by_aspect"]["empathy"]
    assert emp["pairs"]["alpha-sys vs beta-sys"]["win"] == 6 and emp["pairs"]["alpha-sys vs beta-sys"]["lose"] == 0
    assert emp["pairs"]["alpha-sys vs beta-sys"]["sign_test_p"] == pytest.approx(2 / 2 ** 6)
    flu = res["by_aspect"]["fluency"]
    assert flu["pairs"]["alpha-sys vs beta-sys"]["win"] == 6  # majority 2 of 3 still alpha
    assert flu["fleiss_kappa"]["items"] == 6 and flu["fleiss_kappa"]["raters"] == 3
    assert flu["fleiss_kappa"]["kappa"] < emp["fleiss_kappa"]["kappa"] or emp["fleiss_kappa"]["kappa"] is None
    assert (tmp_path / "res.md").read_text().startswith("# Human evaluation")


def test_aggregate_likert_means_and_bad_answer(tmp_path):
    out = export_sheets(systems(), tmp_path / "lk", mode="likert", n=3, annotators=2, aspects=["empathy"], seed=0)
    key = json.loads((out / "key.json").read_text())
    for i in (1, 2):
        rows = list(csv.DictReader((out / f"annotator_{i}.csv").open()))
        for r in rows:
            r["empathy"] = "5" if key["items"][r["item"]]["system"] == "alpha-sys" else "2"
        with (out / f"annotator_{i}.csv").open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    res = aggregate([out / "annotator_1.csv", out / "annotator_2.csv"], out / "key.json")
    s = res["by_aspect"]["empathy"]["systems"]
    assert s["alpha-sys"]["mean"] == 5.0 and s["beta-sys"]["mean"] == 2.0 and s["alpha-sys"]["n"] == 6
    assert res["by_aspect"]["empathy"]["fleiss_kappa"]["kappa"] == pytest.approx(1.0)
    text = (out / "annotator_1.csv").read_text().splitlines()
    text[2] = text[2].rsplit(",", 1)[0] + ",7"
    (out / "annotator_1.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(DataError) as e:
        aggregate([out / "annotator_1.csv"], out / "key.json")
    assert e.value.line == 3 and e.value.field == "empathy"


def test_cli_export_and_aggregate(tmp_path):
    from empathkit.cli.main import app

    paths = []
    for name, recs in systems().items():
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps({"id": r.id, "emotion": r.emotion, "context": r.context, "reference": r.reference,
                                         "prediction": r.hypothesis}) + "\n" for r in recs))
        paths.append(f"{name}={p}")
    runner = CliRunner()
    r = runner.invoke(app, ["humaneval", "export", *paths, "-n", "3", "-k", "2", "-o", str(tmp_path / "he")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["humaneval", "aggregate", str(tmp_path / "he" / "annotator_1.csv"), "--key",
                            str(tmp_path / "he" / "key.json")])
    assert r.exit_code == 0, r.output  # empty answers are allowed (left out)


def test_sheet_saved_with_excel_bom_is_read(tmp_path):
    from empathkit.humaneval import read_sheet

    p = tmp_path / "s.csv"
    p.write_bytes("\ufeffitem,context,response,empathy\nitem-0001,c,r,4\n".encode("utf-8"))
    assert read_sheet(p, ["empathy"], "likert") == {"item-0001": {"empathy": "4"}}
