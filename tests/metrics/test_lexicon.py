"""NIDF, word choice (intensity / valence / arousal) and VADER on tiny written lexicons and a fake ED folder."""

from __future__ import annotations

import math

import pytest

from empathkit.metrics import METRICS
from empathkit.metrics.base import Batch
from empathkit.metrics.resources import Resources

HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"


@pytest.fixture
def lexicons(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path / "cache"))
    ed = tmp_path / "ed"
    ed.mkdir()
    # documents (utterances): "the cat" ×3, "the dog", "a rare word" → df: the=4, cat=3, dog=1, a=1, rare=1, word=1
    rows = ["the cat", "the cat", "the dog", "a rare word"]
    (ed / "train.csv").write_text(HEADER + "".join(f"c{i},1,sad,p,0,{u},,\n" for i, u in enumerate(rows)))
    (ed / "valid.csv").write_text(HEADER + "v0,1,sad,p,0,the cat,,\n")
    vad = tmp_path / "vad.txt"
    vad.write_text("Word\tValence\tArousal\tDominance\nsad\t0.1\t0.4\t0.2\nhappy\t0.9\t0.7\t0.6\ndog\t0.6\t0.5\t0.5\n")
    inten = tmp_path / "int.txt"
    inten.write_text("word\temotion\temotion-intensity-score\nsad\tsadness\t0.8\nhappy\tjoy\t0.6\nhappy\ttrust\t0.3\n")
    return Resources({"ed_dir": str(ed), "vad_lexicon": str(vad), "intensity_lexicon": str(inten)})


def test_nidf_hand_computed_and_cached_outside_repo(lexicons, tmp_path):
    r = METRICS.get("nidf").fn(Batch(["the cat", "a dog zebra", ""], ["", "", ""]), lexicons)
    lo, hi = math.log(1), math.log(4)
    nidf = lambda df: (hi - math.log(df)) / (hi - lo)  # noqa: E731
    assert r.per_example["nidf"][0] == pytest.approx((nidf(4) + nidf(3)) / 2)
    assert r.per_example["nidf"][1] == pytest.approx((nidf(1) + nidf(1) + 1.0) / 3)  # unseen "zebra" counts as 1
    assert math.isnan(r.per_example["nidf"][2])
    assert r.aggregate["nidf"] == pytest.approx((r.per_example["nidf"][0] + r.per_example["nidf"][1]) / 2)
    assert list((tmp_path / "cache" / "metrics").glob("ed-df-*.json"))


def test_word_choice_signed_and_absolute(lexicons):
    b = Batch(["I am happy for you", "ok"], ["", ""], contexts=[["I am so sad about my dog"], ["I am sad"]])
    r = METRICS.get("word-choice").fn(b, lexicons, vad_version="v1")
    # max over tokens, missing words = 0: prev1 V=max(0.1, 0.6)=0.6 A=0.5 I=0.8; resp1 V=0.9 A=0.7 I=0.6 (max of joy/trust)
    assert r.per_example["wc-valence"][0] == pytest.approx(0.6 - 0.9)
    assert r.per_example["wc-arousal"][0] == pytest.approx(0.5 - 0.7)
    assert r.per_example["wc-intensity"][0] == pytest.approx(0.8 - 0.6)
    assert r.per_example["wc-valence-abs"][0] == pytest.approx(0.3)
    # "ok" has no lexicon word → 0 (Lee et al.'s script); "I am sad" → V 0.1
    assert r.per_example["wc-valence"][1] == pytest.approx(0.1)
    assert r.aggregate["wc-valence-abs"] == pytest.approx((0.3 + 0.1) / 2)


def test_word_choice_needs_contexts(lexicons):
    from empathkit.errors import ResourceMissing

    with pytest.raises(ResourceMissing, match="no contexts"):
        METRICS.get("word-choice").fn(Batch(["hi"], ["x"]), lexicons)


def test_vader_equals_vadersentiment():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    sia = SentimentIntensityAnalyzer()
    b = Batch(["This is wonderful!", "I hate this."], ["", ""], contexts=[["I am sad."], []])
    r = METRICS.get("vader").fn(b, None)
    assert r.per_example["vader-compound"] == pytest.approx([sia.polarity_scores(h)["compound"] for h in b.hypotheses])
    d = r.per_example["vader-diff-abs"]
    assert d[0] == pytest.approx(abs(sia.polarity_scores("I am sad.")["compound"] - r.per_example["vader-compound"][0]))
    assert math.isnan(d[1])


@pytest.mark.integration
def test_word_choice_on_the_real_nrc_lexicons():
    from empathkit.data.emotions import load_vad_lexicon
    from tests.conftest import DATA

    if DATA is None or not (DATA / "nrc_vad" / "v1_2018" / "NRC-VAD-Lexicon.txt").is_file():
        pytest.skip("NRC lexicons not found in the data folder")
    v1 = load_vad_lexicon(str(DATA / "nrc_vad" / "v1_2018" / "NRC-VAD-Lexicon.txt"))
    b = Batch(["so happy"], [""], contexts=[["so happy"]])
    r = METRICS.get("word-choice").fn(b, Resources(), vad_version="v1")
    assert r.per_example["wc-valence"] == [0.0]  # same words → no distance
    b = Batch(["I am happy"], [""], contexts=[["terrible"]])
    r = METRICS.get("word-choice").fn(b, Resources(), vad_version="v1")
    assert r.per_example["wc-valence"][0] == pytest.approx(v1["terrible"][0] - max(v1.get(w, (0,))[0] for w in ("i", "am", "happy")))
    assert r.info["vad_lexicon"].endswith("v1_2018/NRC-VAD-Lexicon.txt")
    r2 = METRICS.get("word-choice").fn(b, Resources(), vad_version="v2.1")
    assert r2.info["missing_words"] == "skip" and r2.per_example["wc-valence"][0] < 0
