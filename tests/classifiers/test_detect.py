"""classifiers.detect: one emotion-detection path (whole dialogue context, the classifier's recorded input
convention), never raising; the serving re-export and the ECG-LoRA predictor use it."""

from __future__ import annotations

import logging

import pytest

from empathkit.classifiers import _LOADED
from empathkit.classifiers.core import ClassifierConfig, TextClassifier
from empathkit.classifiers.detect import (NO_GUESS, EmotionDetector, EmotionGuess, conversation_context,
                                          detect_emotions)
from _clf_fakes import RecordingClassifier, RecordingEncoder, keyword_head

LABELS = ["sad", "joyful", "angry"]
CONTEXT = ["I was so angry at my brother", "What happened?", "He broke my bike", "Oh no", "now I am just happy"]


def keyword_classifier(extra):
    W, b = keyword_head(LABELS, {"sad": "sad", "happy": "joyful", "angry": "angry"})
    enc = RecordingEncoder()
    return TextClassifier(ClassifierConfig(kind="emotion", labels=LABELS, extra=extra), W, b, encoder=enc), enc


def test_the_whole_context_reaches_the_classifier():
    clf, enc = keyword_classifier({"input_turns": None})
    det = EmotionDetector(clf)
    (guess,) = det.detect([CONTEXT])
    assert enc.seen == [" ".join(CONTEXT)]  # every turn, oldest first, joined as in training (emotion_input)
    assert isinstance(guess, EmotionGuess) and guess.source == "classifier:emotion"
    assert guess.label in ("angry", "joyful") and 0 < guess.prob <= 1  # the first turn (angry) is seen


def test_the_recorded_input_convention_is_followed():
    clf, enc = keyword_classifier({"input_turns": 1})
    assert [g.label for g in EmotionDetector(clf).detect([CONTEXT, ["so sad"]])] == ["joyful", "sad"]
    assert enc.seen == ["now I am just happy", "so sad"]
    old, enc = keyword_classifier({})  # saved before the record existed: the last 3 turns
    EmotionDetector(old).detect([CONTEXT])
    assert enc.seen == ["He broke my bike Oh no now I am just happy"]


def test_duck_typed_classifier_gets_the_whole_context_and_a_bare_string_is_one_turn():
    fake = RecordingClassifier("sad", 0.5)
    det = EmotionDetector(fake, name="stub")
    out = det.detect([["I lost my job.", "I'm sorry.", "It was  my dream job"], "just one   turn"])
    assert fake.inputs == [["I lost my job. I'm sorry. It was my dream job", "just one turn"]]
    assert out == [EmotionGuess("sad", 0.5, "classifier:stub")] * 2
    assert (out[0].label, out[0].prob) == ("sad", 0.5)
    assert det.detect([]) == [] and fake.inputs == [fake.inputs[0]]


def test_unavailable_classifier_reports_none_without_raising(isolated_cache):
    det = EmotionDetector.load()  # nothing trained in the empty cache
    assert not det.available and det.source == "none"
    assert det.detect([["hello"], ["I am sad"]]) == [NO_GUESS, NO_GUESS]
    assert NO_GUESS == EmotionGuess("none", None, "none") and NO_GUESS.is_none
    assert EmotionDetector(None).detect([CONTEXT]) == [NO_GUESS]
    assert not EmotionDetector.load("no-such-kind").available
    assert not EmotionDetector.load("emotion", source=str(isolated_cache / "missing-folder")).available
    assert detect_emotions([CONTEXT]) == [NO_GUESS]


def test_a_failing_classifier_reports_none_with_a_warning(caplog):
    fake = RecordingClassifier(fail=RuntimeError("encoder exploded"))
    with caplog.at_level(logging.WARNING, logger="empathkit.classifiers.detect"):
        out = EmotionDetector(fake).detect([CONTEXT, ["x"]])
    assert out == [NO_GUESS, NO_GUESS]
    assert any(r.levelno == logging.WARNING and "encoder exploded" in r.getMessage() for r in caplog.records)

    class Short(RecordingClassifier):  # a wrong number of predictions is a failure too
        def predict(self, texts):
            return [("sad", 0.9)]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="empathkit.classifiers.detect"):
        assert EmotionDetector(Short()).detect([["a"], ["b"]]) == [NO_GUESS, NO_GUESS]
    assert caplog.records


def test_conversation_context_keeps_user_and_assistant_turns_in_order():
    messages = [{"role": "system", "content": "You are kind."},
                {"role": "user", "content": "My dog died."},
                {"role": "assistant", "content": "I am so sorry."},
                {"role": "developer", "content": "be brief"},
                {"role": "tool", "content": "{}"},
                {"role": "assistant", "content": None},
                {"role": "user", "content": [{"type": "text", "text": "He was "}, {"type": "text", "text": "14."}]},
                {"role": "user", "content": "   "}]
    assert conversation_context(messages) == ["My dog died.", "I am so sorry.", "He was 14."]
    assert conversation_context([{"role": "system", "content": "x"}]) == []


def test_detect_emotions_and_the_old_alias_use_the_loaded_classifier(isolated_cache):
    from empathkit.classifiers import predict_context_emotion
    from empathkit.errors import ResourceMissing

    with pytest.raises(ResourceMissing):  # the alias keeps raising when nothing is trained
        predict_context_emotion([CONTEXT])
    clf, enc = keyword_classifier({"input_turns": None})
    _LOADED[("emotion", "")] = clf
    (g,) = detect_emotions([["so sad"]])
    assert (g.label, g.source) == ("sad", "classifier:emotion") and g.prob > 0.9
    assert [lab for lab, _ in predict_context_emotion([["so sad"], ["happy"]])] == ["sad", "joyful"]
    assert EmotionGuess.forced("afraid") == EmotionGuess("afraid", None, "request")


def test_detectors_on_one_classifier_share_their_lock():
    fake = RecordingClassifier()
    assert EmotionDetector(fake)._lock is EmotionDetector(fake)._lock
    assert EmotionDetector(RecordingClassifier())._lock is not EmotionDetector(fake)._lock


def test_serving_reexports_and_the_ecg_lora_predictor_use_the_detector(isolated_cache):
    from empathkit.classifiers import detect
    from empathkit.methods.ecg_lora.predictor import classifier_predictor
    from empathkit.serving import emotion

    assert emotion.EmotionDetector is detect.EmotionDetector and emotion.NONE == "none"
    assert emotion.conversation_context is detect.conversation_context
    assert classifier_predictor() is None  # nothing trained: ECG-LoRA falls back to the mean gate
    fake = RecordingClassifier("sad", 0.8, config=ClassifierConfig(kind="emotion", labels=LABELS,
                                                                 extra={"input_turns": None}))
    _LOADED[("emotion", "")] = fake
    predict = classifier_predictor()
    assert predict([CONTEXT, ["so sad"]]) == ["sad", "sad"]
    assert fake.inputs == [[" ".join(CONTEXT), "so sad"]]
    fake.fail = RuntimeError("boom")  # a failing classifier gives None (unknown emotion), not an exception
    assert predict([CONTEXT]) == [None]


def test_the_detector_says_which_classifier_it_is(tmp_path):
    import json

    clf, _ = keyword_classifier({"input_turns": None})
    folder = clf.save(tmp_path / "emotion")
    (folder / "metrics.json").write_text(json.dumps({"method": "frozen-minilm+logreg", "variant": "demo-quick",
                                                     "test": {"accuracy": 0.399}, "data": {"sizes": {"test": 1000}}}))
    d = EmotionDetector(TextClassifier.load(folder)).description
    assert (d["variant"], d["test_accuracy"], d["test_examples"], d["folder"]) == ("demo-quick", 0.399, 1000, str(folder))
    assert d["summary"].startswith("quick demo classifier (frozen MiniLM + logistic regression, ED test accuracy 0.40)")
    assert "classifiers train emotion" in d["summary"] and d["short"] == "quick demo classifier"
    (folder / "metrics.json").write_text(json.dumps({"method": "ensemble of 2 fine-tuned minilm+linear (mean "
                                                     "probability)", "test": {"accuracy": 0.505}}))
    assert EmotionDetector(TextClassifier.load(folder)).description["summary"] == \
        "classifier 'emotion' (fine-tuned MiniLM ensemble, ED test accuracy 0.51)"
    assert EmotionDetector(RecordingClassifier("sad", 0.5), name="stub").description["summary"] == "classifier 'stub'"
    assert EmotionDetector(None).description is None
