"""BLEU / ROUGE / METEOR variants: equal to their reference libraries, hand-computed values, documented quirks."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from empathkit.metrics import METRICS
from empathkit.metrics.base import Batch
from empathkit.metrics.resources import nltk_tokenize

HYPS = ["I am so sorry to hear that. Did you call the police?", "Congrats! You must be proud of yourself.",
        "That sounds scary, what happened next?", "Oh no, that is terrible."]
REFS = ["Oh no, I am so sorry. Did they catch the thief?", "Congratulations, you must be so proud!",
        "That must have been scary. What did you do?", "That is terrible, I am sorry for your loss."]


def run(name, hyps=HYPS, refs=REFS, **opts):
    return METRICS.get(name).fn(Batch(hyps, refs), None, **opts)


def test_tokeniser_without_punkt_splits_sentences_and_punctuation():
    assert nltk_tokenize("I'm sorry. Did you call?") == ["I", "'m", "sorry", ".", "Did", "you", "call", "?"]
    assert nltk_tokenize("Hello World", lower=True) == ["hello", "world"]


def test_bleu_equals_sacrebleu():
    import sacrebleu
    from sacrebleu.metrics import BLEU

    agg = run("bleu").aggregate
    assert agg["bleu-4"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert agg["bleu-2"] == pytest.approx(BLEU(max_ngram_order=2).corpus_score(HYPS, [REFS]).score)
    assert list(agg) == ["bleu-1", "bleu-2", "bleu-3", "bleu-4"]


def test_bleu_nltk_equals_nltk_corpus_bleu():
    from nltk.translate.bleu_score import corpus_bleu

    H = [nltk_tokenize(h, lower=True) for h in HYPS]
    R = [[nltk_tokenize(r, lower=True)] for r in REFS]
    agg = run("bleu-nltk").aggregate
    assert agg["bleu-nltk-4"] == pytest.approx(corpus_bleu(R, H))
    assert agg["bleu-nltk-1"] == pytest.approx(corpus_bleu(R, H, weights=(1.0,)))


def test_bleu_kemp_hand_computed_whitespace_x100():
    # hyp "the cat sat on the mat" vs ref "the cat is on the mat": p1 = 5/6, p2 = 3/5, BP = 1
    agg = run("bleu-kemp", ["the cat sat on the mat"], ["the cat is on the mat"], orders=[1, 2]).aggregate
    assert agg["bleu-kemp-1"] == pytest.approx(100 * 5 / 6)
    assert agg["bleu-kemp-2"] == pytest.approx(100 * math.sqrt(5 / 6 * 3 / 5))


def test_bleu_kemp_quirk_whitespace_keeps_punctuation_attached():
    # "sorry." ≠ "sorry" for KEMP (whitespace tokens); NLTK tokens split the period off and match
    kemp = run("bleu-kemp", ["i am sorry."], ["i am sorry"], orders=[1]).aggregate["bleu-kemp-1"]
    nltk_ = run("bleu-nltk", ["i am sorry."], ["i am sorry"], orders=[1]).aggregate["bleu-nltk-1"]
    assert kemp == pytest.approx(100 * 2 / 3)
    assert nltk_ == pytest.approx(3 / 4)


def multi_bleu_perl(hyps, refs, lowercase=True, max_n=4):
    """A line-by-line Python port of Moses' multi-bleu.perl (single reference), used as the oracle."""
    correct, total = [0] * (max_n + 1), [0] * (max_n + 1)
    len_t = len_r = 0
    for h, r in zip(hyps, refs):
        if lowercase:
            h, r = h.lower(), r.lower()
        hw, rw = h.split(), r.split()
        len_t += len(hw)
        len_r += len(rw)  # closest reference length: a single reference here
        ref_counts = Counter(tuple(rw[i:i + n]) for n in range(1, max_n + 1) for i in range(len(rw) - n + 1))
        for n in range(1, max_n + 1):
            hyp_counts = Counter(tuple(hw[i:i + n]) for i in range(len(hw) - n + 1))
            for g, c in hyp_counts.items():
                total[n] += c
                correct[n] += min(c, ref_counts.get(g, 0))
    bleu = 0.0
    for n in range(1, max_n + 1):
        if total[n] == 0 or correct[n] == 0:
            return 0.0
        bleu += math.log(correct[n] / total[n])
    bp = math.exp(1 - len_r / len_t) if len_t < len_r else 1.0
    return 100 * bp * math.exp(bleu / max_n)


def test_bleu_moses_equals_multi_bleu_perl_port():
    from empathkit.metrics.lexical import moses_pretokenize

    hyps = ["i am so sorry to hear that , did you call the police ?", "that is terrible , i am sorry ."] * 3
    refs = ["oh no , i am so sorry . did you call the police ?", "that is terrible , i am so sorry for you ."] * 3
    agg = run("bleu-moses", hyps, refs, pretokenize="none").aggregate
    for n in (1, 2, 3, 4):
        assert agg[f"bleu-moses-{n}"] == pytest.approx(multi_bleu_perl(hyps, refs, max_n=n), abs=1e-9)
    H = [moses_pretokenize(h) for h in HYPS]
    R = [moses_pretokenize(r) for r in REFS]
    assert run("bleu-moses").aggregate["bleu-moses-2"] == pytest.approx(multi_bleu_perl(H, R, max_n=2))


def test_bleu_moses_quirk_lowercases_and_no_smoothing():
    moses = run("bleu-moses", ["Hello World Again Today"], ["hello world again today"]).aggregate
    sacre = run("bleu", ["Hello World Again Today"], ["hello world again today"]).aggregate
    assert moses["bleu-moses-4"] == pytest.approx(100.0)
    assert sacre["bleu-4"] < 10  # sacrebleu's default is case-sensitive
    # no 4-gram match → exactly 0 (multi-bleu has no smoothing)
    assert run("bleu-moses", ["a b c d e"], ["a b c x e"]).aggregate["bleu-moses-4"] == 0.0


def test_bleu_sent_equals_nltk_sentence_bleu_method4():
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    r = run("bleu-sent")
    expect = [sentence_bleu([nltk_tokenize(rf, lower=True)], nltk_tokenize(h, lower=True),
                            smoothing_function=SmoothingFunction().method4) for h, rf in zip(HYPS, REFS)]
    assert r.per_example["bleu-sent-4"] == pytest.approx(expect)
    assert r.aggregate["bleu-sent-4"] == pytest.approx(sum(expect) / len(expect))
    assert run("bleu-sent", [""], ["something"]).aggregate["bleu-sent-4"] == 0.0


def test_rouge_equals_rouge_score_with_stemming():
    from rouge_score import rouge_scorer

    r = run("rouge")
    sc = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expect = [sc.score(rf, h)["rougeL"].fmeasure for h, rf in zip(HYPS, REFS)]
    assert r.per_example["rouge-l"] == pytest.approx(expect)
    # stemming quirk: "running" and "runs" both stem to "run"
    assert run("rouge", ["he runs"], ["he running"]).aggregate["rouge-1"] == pytest.approx(1.0)
    assert run("rouge", ["he runs"], ["he running"], use_stemmer=False).aggregate["rouge-1"] == pytest.approx(0.5)


def test_rouge_types_option_limits_keys():
    assert list(run("rouge", types=["rougeL"]).aggregate) == ["rouge-l"]


def test_meteor_exact_stem_variant_equals_nltk_and_records_variant():
    from nltk.translate.meteor_score import meteor_score

    from empathkit.metrics.lexical import _NoWordNet
    from empathkit.metrics.resources import wordnet_available

    r = run("meteor", synonyms="never")
    assert r.info["variant"] == "exact+stem"
    expect = [meteor_score([nltk_tokenize(rf, lower=True)], nltk_tokenize(h, lower=True), wordnet=_NoWordNet())
              for h, rf in zip(HYPS, REFS)]
    assert r.per_example["meteor"] == pytest.approx(expect)
    auto = run("meteor")
    assert auto.info["variant"] == ("exact+stem+synonym" if wordnet_available() else "exact+stem")
    # stem matching: "cats" ~ "cat" counts as a match, so the score is well above a no-match sentence
    stem = run("meteor", ["the cats sleep"], ["the cat sleeps"], synonyms="never").aggregate["meteor"]
    none = run("meteor", ["a dog barks"], ["the cat sleeps"], synonyms="never").aggregate["meteor"]
    assert stem > 0.9 and none == 0.0
