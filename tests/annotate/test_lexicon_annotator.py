"""The offline lexicon reason tagger on handwritten sentences and tiny handwritten lexicon files."""

from __future__ import annotations

import pytest

from empathkit.annotate.base import words
from empathkit.annotate.lexicon import LexiconTagger, lemma_candidates
from empathkit.errors import DataError, ResourceMissing

# tiny lexicons written for the test (made-up scores in the NRC formats, not NRC entries)
INTENSITY = "word\temotion\temotion-intensity-score\nhappy\tjoy\t0.8\nworry\tfear\t0.6\ncry\tsadness\t0.7\n" \
            "friend\ttrust\t0.9\nsad\tsadness\t0.9\nmeh\tjoy\t0.2\n"
EMOLEX = "betray\tanger\t1\r\nbetray\tdisgust\t1\r\nbetray\tjoy\t0\r\nschool\ttrust\t1\r\nfearful\tfear\t1\r\n"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    from _annotate_fakes import written_lexicon_tagger

    return written_lexicon_tagger(tmp_path_factory.mktemp("lex"), INTENSITY, EMOLEX)


def tagged(tagger, text):
    toks = words(text)
    return [w for w, t in zip(toks, tagger.tag_tokens(toks)) if t == "<em>"]


def test_single_words_lemmas_and_left_out_emotions(tagger):
    assert tagged(tagger, "I was happy.") == ["happy"]
    assert tagged(tagger, "She cried and worried, sadly.") == ["cried", "worried", "sadly"]
    assert tagged(tagger, "My friend came to school.") == []  # trust only: not an emotion cue
    assert tagged(tagger, "He betrayed me") == ["betrayed"]  # EmoLex-only word with 2 core emotions
    assert tagged(tagger, "It was meh.") == []  # below the intensity threshold
    assert tagged(tagger, "so FEARFUL") == []  # EmoLex-only with one core emotion
    assert "cry" in lemma_candidates("cried") and "sad" in lemma_candidates("sadder")


def test_negation_joins_the_span(tagger):
    assert tagged(tagger, "I am not happy.") == ["not", "happy"]
    assert tagged(tagger, "I wasn't very happy") == ["n't", "very", "happy"]
    assert tagged(tagger, "I didnt really feel happy") == ["didnt", "really", "feel", "happy"]  # window 2
    assert tagged(tagger, "No, happy now") == ["happy"]  # punctuation stops the window
    assert tagged(tagger, "never at all ever so happy") == ["happy"]  # too far


def test_multi_word_cues_and_hyphens(tagger):
    assert tagged(tagger, "I'm fed up with it") == ["fed", "up"]
    assert tagged(tagger, "My dog passed away.") == ["passed", "away"]
    assert tagged(tagger, "I can't wait!") == ["ca", "n't", "wait"]
    assert tagged(tagger, "I was over-the-moon and heart-broken") == ["over-the-moon", "heart-broken"]
    assert tagged(tagger, "a super-happy day") == ["super-happy"]


def test_punctuation_and_symbols_never_tagged(tagger):
    toks = words("Happy!!! :( ... 100%")
    tags = tagger.tag_tokens(toks)
    assert [t for w, t in zip(toks, tags) if not any(c.isalpha() for c in w)] == ["<noem>"] * (len(toks) - 1)
    assert tagger.tag([[], ["sad"]]) == [[], ["<em>"]]
    assert tagger.annotator == "lexicon@1"


def test_bad_lexicon_files(tmp_path):
    bad = tmp_path / "emolex.txt"
    bad.write_text("happy\tjoy\n")
    (tmp_path / "int.txt").write_text(INTENSITY)
    with pytest.raises(DataError, match="emolex.txt:1"):
        LexiconTagger(bad, tmp_path / "int.txt")
    with pytest.raises(ResourceMissing, match="EmoLex"):
        LexiconTagger(tmp_path / "none.txt", tmp_path / "int.txt")


def test_reason_spans_offsets(tagger):
    from empathkit.annotate.highlight import reason_metadata, reason_spans

    text = 'I am not happy, "really" worried... and fed up!'
    spans = reason_spans(text, tagger)
    assert [s["text"] for s in spans] == ["not happy", "worried", "fed up"]
    assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
    assert reason_metadata("", tagger) == {"spans": [], "annotator": "lexicon@1"}
