"""The chat page's highlight metadata (``empathkit.annotate.highlight``) on written text and tiny written lexicons."""

from __future__ import annotations

import logging
import threading

import pytest

from empathkit.errors import ResourceMissing

# made-up scores in the NRC formats, written for the test (not NRC entries)
INTENSITY = "word\temotion\temotion-intensity-score\nhappy\tjoy\t0.8\nworry\tfear\t0.6\nsad\tsadness\t0.9\n" \
            "lonely\tsadness\t0.7\n"
EMOLEX = "betray\tanger\t1\r\nbetray\tdisgust\t1\r\n"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    from _annotate_fakes import written_lexicon_tagger

    return written_lexicon_tagger(tmp_path_factory.mktemp("lex"), INTENSITY, EMOLEX)


def check_offsets(text, spans):
    assert all(text[s["start"]:s["end"]] == s["text"] for s in spans)
    assert all(a["end"] < b["start"] for a, b in zip(spans, spans[1:]))  # sorted, disjoint, not touching


def test_spans_are_character_offsets_of_the_tagged_words(tagger):
    from empathkit.annotate.highlight import reason_metadata

    text = "Honestly I'm worried. My friend betrayed me and I feel lonely and sad."
    meta = reason_metadata(text, tagger)
    assert meta["annotator"] == "lexicon@1" and "clipped" not in meta
    assert [(s["start"], s["end"], s["text"]) for s in meta["spans"]] == [
        (13, 20, "worried"), (32, 40, "betrayed"), (55, 61, "lonely"), (66, 69, "sad")]
    check_offsets(text, meta["spans"])


def test_negation_is_one_span_of_whole_words(tagger):
    """As the tagger does: the negator and the words up to the cue are one span; a clitic negator ("n't") widens
    the span to its whole word ("isn't"), the page never marks half a word."""
    from empathkit.annotate.highlight import reason_spans

    text = "I am not happy. She isn't very happy\nand I can't be sad, no; happy!"
    spans = reason_spans(text, tagger)
    assert [s["text"] for s in spans] == ["not happy", "isn't very happy", "can't be sad", "happy"]
    check_offsets(text, spans)
    assert reason_spans("Not happy", tagger)[0] == {"start": 0, "end": 9, "text": "Not happy"}


def test_quotes_unicode_and_empty_text(tagger):
    from empathkit.annotate.highlight import reason_metadata, reason_spans

    text = 'He said "sad" 😢 — café… happy'  # NLTK writes the quotes as `` '' ; an emoji is one code point in Python
    spans = reason_spans(text, tagger)
    assert [s["text"] for s in spans] == ["sad", "happy"] and spans[1]["start"] == text.index("happy")
    check_offsets(text, spans)
    assert reason_metadata("", tagger) == {"spans": [], "annotator": "lexicon@1"}
    assert reason_metadata("!!! ...", tagger)["spans"] == []


def test_long_messages_are_clipped_and_say_so(tagger):
    from empathkit.annotate.highlight import reason_metadata

    text = "I am sad. " + "Nothing else to report here. " * 200 + "happy"
    meta = reason_metadata(text, tagger, max_chars=100)
    assert meta["clipped"] is True and [s["text"] for s in meta["spans"]] == ["sad"]


def test_message_reasons_never_waits_nor_fails_the_request(tagger, monkeypatch, caplog):
    from empathkit.annotate import highlight

    monkeypatch.setattr(highlight, "_TAGGER", {})
    monkeypatch.setattr(highlight, "_WARNED", set())
    loaded = threading.Event()

    def slow_missing():  # no ERA and no lexicon files: the load fails, in its own thread
        loaded.wait(10)
        raise ResourceMissing("NRC EmoLex not found at /nowhere")

    monkeypatch.setattr(highlight, "default_tagger", slow_missing)
    with caplog.at_level(logging.WARNING, logger="empathkit.annotate.highlight"):
        assert highlight.message_reasons("so sad") is None  # still loading: the request does not wait
        loaded.set()
        highlight._TAGGER["loading"].join(10)
        assert highlight.message_reasons("so sad") is None and "error" in highlight._TAGGER  # no retry loop

        monkeypatch.setitem(highlight._TAGGER, "t", tagger)
        assert highlight.message_reasons("so sad")["spans"][0]["text"] == "sad"

        class Broken:
            annotator = "broken@1"

            def tag(self, tokens):
                raise RuntimeError("Already borrowed")

        monkeypatch.setitem(highlight._TAGGER, "t", Broken())
        assert highlight.message_reasons("so sad") is None
        assert highlight.message_reasons("so sad again") is None
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs.count("emotion-reason highlighting unavailable (RuntimeError: Already borrowed)") == 1  # once
    assert "emotion-reason highlighting unavailable (ResourceMissing: NRC EmoLex not found at /nowhere)" in msgs


def test_era_as_the_tagger():
    """ERA tags words; the spans follow its tags (a tiny random ERA: whatever it tags, offsets stay right)."""
    from empathkit.annotate.base import words
    from empathkit.annotate.era.model import tiny_random_era
    from empathkit.annotate.highlight import reason_metadata
    from empathkit.annotate.pipeline import ERATagger

    tg = ERATagger(tiny_random_era(seed=1))
    text = "I can't believe my cat ran away, I'm heart-broken."
    meta = reason_metadata(text, tg)
    assert meta["annotator"] == "era@1"
    check_offsets(text, meta["spans"])
    tags = tg.tag([words(text)])[0]
    assert (len(meta["spans"]) == 0) == ("<em>" not in tags)


def test_message_reasons_never_waits_for_a_load_in_progress(monkeypatch):
    """While the tagger loads (default_tagger holds the load lock), a chat request gets None at once — it used to
    block on the lock for the whole ERA load, so a SIGTERM found the request not yet queued."""
    import threading
    import time

    from empathkit.annotate import highlight

    monkeypatch.setattr(highlight, "_TAGGER", {})
    with highlight._LOAD_LOCK:  # a load under way
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(r=highlight.message_reasons("I am so sad today")))
        t0 = time.monotonic()
        t.start()
        t.join(timeout=5)
        assert not t.is_alive() and time.monotonic() - t0 < 2
    assert out == {"r": None}
