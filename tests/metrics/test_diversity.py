"""Distinct-n conventions and the response-tries statistics on hand-computed examples."""

from __future__ import annotations

import pytest

from empathkit.metrics import METRICS
from empathkit.metrics.base import Batch
from empathkit.metrics.diversity import response_tries, spanify


def run(name, hyps, **opts):
    return METRICS.get(name).fn(Batch(hyps, [""] * len(hyps)), None, **opts)


def test_corpus_vs_per_sentence_dist_differ_on_crafted_example():
    hyps = ["i am sorry", "i am sorry"]  # each sentence is fully distinct, the corpus repeats itself
    corpus = run("dist", hyps).aggregate
    sent = run("dist-sent", hyps).aggregate
    assert corpus["dist-1"] == pytest.approx(100 * 3 / 6)  # ×100, CEM/CASE
    assert corpus["dist-2"] == pytest.approx(100 * 2 / 4)
    assert sent["dist-sent-1"] == pytest.approx(1.0)
    assert sent["dist-sent-2"] == pytest.approx(1.0)


def test_dist_sent_short_sentences_score_zero_and_repeats_count():
    r = run("dist-sent", ["hi", "no no no"], ns=[1, 2])
    assert r.per_example["dist-sent-2"] == [0.0, pytest.approx(1 / 2)]
    assert r.per_example["dist-sent-1"] == [1.0, pytest.approx(1 / 3)]


def test_kemp_whitespace_vs_nltk_tokens():
    hyps = ["Sorry! sorry"]
    assert run("dist-ws", hyps, ns=[1]).aggregate["dist-ws-1"] == pytest.approx(100.0)  # "Sorry!" ≠ "sorry"
    assert run("dist", hyps, ns=[1]).aggregate["dist-1"] == pytest.approx(100 * 2 / 3)  # sorry ! sorry


def test_length_is_mean_nltk_tokens():
    assert run("length", ["I'm fine.", "ok"]).aggregate["length"] == pytest.approx((4 + 1) / 2)


def test_spanify_folds_the_heaviest_span_first():
    toks = [s.split() for s in ["i am so sorry", "i am so sorry", "i am happy"]]
    templates, spans = spanify(toks)
    assert spans == {"span_0": ("i", "am", "so", "sorry")}  # weight 4 × 2 = 8 beats "i am" (2 × 3 = 6)
    assert templates == [["span_0"], ["span_0"], ["i", "am", "happy"]]


def test_response_tries_hand_computed():
    s = response_tries(["i am so sorry", "i am so sorry", "i am happy"])
    assert s["templates"] == 2
    assert s["span-nodes"] == 1
    assert s["total-nodes"] == 5  # root, span_0, i, am, happy
    assert s["root-children"] == 2
    assert s["compression"] == pytest.approx(5 / 6)  # plain trie: root, i, am, so, sorry, happy
    assert s["unique-start-words"] == 1


def test_response_tries_nested_spans():
    hyps = ["so sorry to hear", "so sorry to hear that", "so sorry to hear that friend", "very so sorry"]
    templates, spans = spanify([h.split() for h in hyps])
    # every template is distinct and no n-gram of the templates repeats
    from collections import Counter

    grams = Counter(tuple(t[i:i + n]) for t in templates for n in range(2, len(t) + 1) for i in range(len(t) - n + 1))
    assert not grams or max(grams.values()) < 2
    assert len({tuple(t) for t in templates}) == 4
    assert any(any(x in spans for x in s) for s in spans.values()) or len(spans) >= 1


@pytest.mark.parametrize("folding", ["token", "string"])
def test_spanify_tie_break_sees_positions_that_moved_left(folding):
    # Hand-traced with the original's full recount per iteration (Lee et al.'s SpanProcessor):
    # 1. "s t u b c" (5 × 2 = 10) folds; "b c" drops from 4 to 2 occurrences.
    # 2. "p q r" (3 × 3 = 9) folds; in response 0 "a b" moves from position 3 to 1, "b c" from 4 to 2.
    # 3. "a b" and "b c" tie (2 × 2 = 4, length 2): the first in response 0 wins, "a b" (position 1).
    # 4. nothing repeats any more. A lazy heap that only repairs keys that grew kept "a b" at position 3 and
    #    folded "b c" here instead.
    resp = ["p q r a b c", "p q r", "p q r", "s t u b c", "s t u b c", "b c", "a b"]
    templates, spans = spanify([r.split() for r in resp], folding=folding)
    assert [spans[s] for s in spans] == [("s", "t", "u", "b", "c"), ("p", "q", "r"), ("a", "b")]
    assert [[spans.get(x, x) for x in t] for t in templates] == [
        [("p", "q", "r"), ("a", "b"), "c"], [("p", "q", "r")], [("p", "q", "r")],
        [("s", "t", "u", "b", "c")], [("s", "t", "u", "b", "c")], ["b", "c"], [("a", "b")]]
