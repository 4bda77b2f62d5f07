"""The named variants behind the as-published presets, each pinned against a hand computation on written
examples: concatenated bigrams, macro vs corpus BLEU, last-line-wins intensity, user DF tables, string folding."""

from __future__ import annotations

import json
import math

import pytest

from empathkit.evaluation import evaluate, resolve_metrics
from empathkit.evaluation.presets import PRESET_READER
from empathkit.evaluation.readers import Record
from empathkit.metrics.base import Batch
from empathkit.metrics.diversity import dist_ws, response_tries
from empathkit.metrics.lexical import bleu_kemp, bleu_macro
from empathkit.metrics.lexicon import nidf, word_choice


def test_concat_bigrams_collide():
    b = Batch(hypotheses=["a bc", "ab c"], references=["x", "y"])
    assert dist_ws(b, ns=[2]).aggregate["dist-ws-2"] == pytest.approx(100.0)  # 2 distinct tuples of 2
    assert dist_ws(b, ns=[2], bigram="concat").aggregate["dist-ws-2"] == pytest.approx(50.0)  # "abc" twice
    assert dist_ws(b, ns=[1], bigram="concat").aggregate["dist-ws-1"] == pytest.approx(100.0)  # unigrams unchanged
    with pytest.raises(ValueError):
        dist_ws(b, bigram="glue")


def test_macro_sentence_bleu_vs_corpus_bleu():
    b = Batch(hypotheses=["a b c d", "x y"], references=["a b c d", "x z"])
    m = bleu_macro(b).aggregate
    # sentence 1: every precision 1, BP 1 → 1; sentence 2: shorter than 3 tokens → p3 = p4 = 0 → 0
    assert m["bleu-macro"] == pytest.approx(50.0)
    assert m["bleu-macro-p1"] == pytest.approx(100 * (1 + 0.5) / 2)
    assert m["bleu-macro-p2"] == pytest.approx(100 * (1 + 0) / 2)
    # corpus BLEU-4 (NLTK) pools the counts; a sentence without n-grams of an order still adds 1 to that
    # order's denominator: p1 = 5/6, p2 = 3/4, p3 = 2/3, p4 = 1/2, BP 1 → far from the macro 50
    corpus = bleu_kemp(b, orders=[4]).aggregate["bleu-kemp-4"]
    assert corpus == pytest.approx(100 * (5 / 6 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25)
    short = bleu_macro(Batch(hypotheses=["a b c d"], references=["a b c d e f g h"])).aggregate
    assert short["bleu-macro"] == pytest.approx(100 * math.exp(1 - 8 / 4))  # BP = exp(1 − r/c)


def _lexicons(tmp_path):
    inten = tmp_path / "intensity.txt"
    inten.write_text("happy\tjoy\t0.900\nhappy\tsadness\t0.200\nok\tjoy\t0.100\n", encoding="utf-8")
    vad = tmp_path / "VAD.json"
    vad.write_text(json.dumps({"happy": [0.9, 0.6, 0.5], "ok": [0.6, 0.3, 0.4]}), encoding="utf-8")
    return str(inten), str(vad)


def test_last_line_wins_intensity(tmp_path):
    inten, vad = _lexicons(tmp_path)
    b = Batch(hypotheses=["ok ."], references=["-"], contexts=[["I am happy"]])
    kw = {"vad_file": vad, "intensity_file": inten}
    mx = word_choice(b, **kw).aggregate
    last = word_choice(b, intensity="last-line", **kw).aggregate
    assert mx["wc-intensity"] == pytest.approx(0.9 - 0.1)  # happy: max(0.9, 0.2)
    assert last["wc-intensity"] == pytest.approx(0.2 - 0.1)  # happy: its last line (0.2)
    assert last["wc-valence"] == pytest.approx(0.9 - 0.6) and last["wc-arousal-abs"] == pytest.approx(0.3)


def test_user_df_table_json_and_text_corpus(tmp_path):
    table = tmp_path / "df.json"
    table.write_text(json.dumps({"word_counts": {"the": 100, "cat": 10, "zebra": 1}}), encoding="utf-8")
    b = Batch(hypotheses=["the cat", "the dog", "zebra zebra"], references=["-"] * 3)
    r = nidf(b, df_table=str(table))
    # NIDF(w) = (log 100 − log df) / (log 100 − log 1): the 0, cat 0.5, zebra 1; "dog" unseen → 1 (oov)
    assert r.per_example["nidf"] == pytest.approx([0.25, 0.5, 1.0])
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat\nthe dog\nthe\nthe\n", encoding="utf-8")  # df: the 4, cat 1, dog 1
    r2 = nidf(Batch(hypotheses=["the cat"], references=["-"]), df_table=str(corpus))
    assert r2.per_example["nidf"] == pytest.approx([0.5])  # the 0, cat 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"the": 0}), encoding="utf-8")
    from empathkit.errors import DataError

    with pytest.raises(DataError, match="positive"):
        nidf(b, df_table=str(bad))


def test_string_folding_matches_inside_tokens():
    resp = ["a b", "a b ca b"]
    tok = response_tries(resp)
    st = response_tries(resp, folding="string")
    # span "a b" (2 occurrences as tokens). Token folding: [S], [S, ca, b] → trie root+S+ca+b = 4 nodes;
    # string folding replaces inside "ca b" too: "S cS" → [S], [S, c+S] → 3 nodes. Plain trie: 5 nodes.
    assert tok["total-nodes"] == 4 and st["total-nodes"] == 3
    assert tok["compression"] == pytest.approx(4 / 5) and st["compression"] == pytest.approx(3 / 5)
    assert tok["span-nodes"] == st["span-nodes"] == 1
    same = ["i am so sorry", "i am so sorry", "i am happy"]
    assert response_tries(same, folding="string") == response_tries(same)  # no substring match: identical


def test_as_published_presets_resolve():
    kemp = dict(resolve_metrics(None, "kemp-paper"))
    assert kemp["dist-ws"]["bigram"] == "concat" and "bleu-macro" in kemp
    assert dict(resolve_metrics(None, "moel-paper"))["bleu-moses"]["pretokenize"] == "none"
    assert dict(resolve_metrics(None, "cem-paper"))["dist"]["lower"] is False
    empo = dict(resolve_metrics(None, "empo-paper"))
    assert empo["response-tries"]["folding"] == "string" and empo["word-choice"]["intensity"] == "last-line"
    assert PRESET_READER["kemp-paper"]["strip"] == "charset" and "moel-paper" not in PRESET_READER
    from empathkit.errors import ConfigError

    with pytest.raises(ConfigError, match="bigram"):
        resolve_metrics(["dist-ws"], metric_options={"dist-ws": {"bigram": "glue"}})


def test_defaults_unchanged_by_the_variants():
    recs = [Record(id=str(i), hypothesis=h, reference="x") for i, h in enumerate(["a bc", "ab c"])]
    res = evaluate([("s", recs)], ["dist-ws"], progress=False)
    assert res.runs[0].aggregates["dist-ws-2"] == pytest.approx(100.0)
