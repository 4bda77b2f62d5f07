"""TextClassifier: predict API, multi-label thresholds, pair inputs, safetensors round trip, registry errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from empathkit.classifiers import classifier_dir, is_trained, load_classifier
from empathkit.classifiers import _LOADED
from empathkit.classifiers.core import ClassifierConfig, TextClassifier, pair_features
from empathkit.errors import DataError, ResourceMissing
from _clf_fakes import KeywordEncoder, keyword_head

LABELS = ["sad", "joyful", "angry"]


@pytest.fixture
def clf():
    W, b = keyword_head(LABELS, {"sad": "sad", "happy": "joyful", "angry": "angry"})
    return TextClassifier(ClassifierConfig(kind="emotion", labels=LABELS), W, b, encoder=KeywordEncoder())


def test_predict_returns_label_and_probability(clf):
    out = clf.predict(["I am so sad today", "what a happy day", "this makes me angry"])
    assert [lab for lab, _ in out] == ["sad", "joyful", "angry"]
    assert all(0.9 < p <= 1.0 for _, p in out)
    proba = clf.predict_proba(["I am so sad today", "nothing"])
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(proba[1], 1 / 3, rtol=1e-5)  # no keyword: uniform


def test_empty_input_and_type_errors(clf):
    assert clf.predict([]) == []
    assert clf.predict_proba([]).shape == (0, 3)
    with pytest.raises(DataError, match="input 1: expected a string"):
        clf.predict(["ok", 3])


def test_multi_label_threshold_and_fallback():
    labels = ["sadness", "joy", "neutral"]
    W, b = keyword_head(labels, {"sad": "sadness", "happy": "joy"})
    b[:] = -2.0  # sigmoid(-2) = 0.12 without keyword, sigmoid(3) = 0.95 with
    c = TextClassifier(ClassifierConfig(kind="goemotions", labels=labels, multi_label=True, threshold=0.3), W, b,
                       encoder=KeywordEncoder())
    got = c.predict_labels(["sad but happy", "plain"], fallback="neutral")
    assert got == [["sadness", "joy"], ["neutral"]]
    assert c.predict_labels(["plain"], threshold=0.1) == [["sadness", "joy", "neutral"]]
    p = c.predict_proba(["sad"])
    assert p[0, 0] > 0.9 and p[0, 1] < 0.2  # independent sigmoids, not a softmax


def test_pair_inputs_use_both_texts():
    enc = KeywordEncoder()
    cfg = ClassifierConfig(kind="epitome-ex", labels=["0", "1", "2"], input="pair", lowercase=True)
    dim = 4 * enc.dim
    W = np.zeros((3, dim), dtype=np.float32)
    W[2, enc.dim + 4] = 6.0  # "why" in the response (second block) → level 2
    c = TextClassifier(cfg, W, np.zeros(3, dtype=np.float32), encoder=enc)
    assert c.predict([("WHY me", "I see."), ("I lost it", "Why did that happen")])[1][0] == "2"
    assert c.predict([("WHY me", "I see.")])[0][0] != "2"  # "why" only in the seeker post
    with pytest.raises(DataError, match="pair"):
        c.predict(["just one text"])
    u, v = np.ones((1, 2)), np.array([[3.0, -1.0]])
    np.testing.assert_allclose(pair_features(u, v), [[1, 1, 3, -1, 3, -1, 2, 2]])


def test_save_load_roundtrip_is_safetensors(clf, tmp_path):
    clf.save(tmp_path / "c")
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert files == ["config.json", "head.safetensors"]
    assert json.loads((tmp_path / "c" / "config.json").read_text())["labels"] == LABELS
    loaded = TextClassifier.load(tmp_path / "c")
    loaded._encoder = KeywordEncoder()
    assert loaded.predict(["so sad"]) == clf.predict(["so sad"])


def test_bad_head_shape_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not match 3 labels"):
        TextClassifier(ClassifierConfig(kind="emotion", labels=LABELS), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ResourceMissing, match="not a trained classifier folder"):
        TextClassifier.load(tmp_path)


def test_load_classifier_untrained_says_how_to_train(isolated_cache):
    assert not is_trained("goemotions")
    with pytest.raises(ResourceMissing, match="empathkit classifiers train goemotions.*SamLowe"):
        load_classifier("goemotions")
    assert load_classifier("emotion", required=False) is None
    with pytest.raises(Exception, match="unknown classifier kind"):
        load_classifier("nope")


def test_load_classifier_from_cache_and_env_folder(isolated_cache, clf, tmp_path, monkeypatch):
    clf.save(classifier_dir("emotion"))
    assert is_trained("emotion")
    got = load_classifier("emotion")
    assert isinstance(got, TextClassifier) and got.labels == LABELS
    assert load_classifier("emotion") is got  # cached per process
    clf.save(tmp_path / "elsewhere")
    monkeypatch.setenv("EMPATHKIT_CLASSIFIER_EMOTION", str(tmp_path / "elsewhere"))
    other = load_classifier("emotion")
    assert other is not got and other.path == tmp_path / "elsewhere"


def test_predict_context_emotion_follows_the_recorded_input_convention(isolated_cache):
    from empathkit.classifiers import predict_context_emotion

    class Recording(KeywordEncoder):
        seen: list = []

        def encode(self, texts, batch_size=64, show_progress=False):
            self.seen.extend(texts)
            return super().encode(texts, batch_size, show_progress)

    W, b = keyword_head(LABELS, {"sad": "sad", "happy": "joyful", "angry": "angry"})
    ctx = [["I was angry", "ok", "fine", "now I am just happy"], ["so sad"]]

    def with_extra(extra):
        enc = Recording()
        enc.seen = []
        _LOADED[("emotion", "")] = TextClassifier(ClassifierConfig(kind="emotion", labels=LABELS, extra=extra), W, b,
                                                  encoder=enc)
        labels = [lab for lab, _ in predict_context_emotion(ctx)]
        return enc.seen, labels

    whole = with_extra({"input_turns": None})
    assert whole[0] == ["I was angry ok fine now I am just happy", "so sad"]
    assert whole[1][1] == "sad" and whole[1][0] in ("joyful", "angry")  # the first turn is seen
    assert with_extra({"input_turns": 1}) == (["now I am just happy", "so sad"], ["joyful", "sad"])
    assert with_extra({})[0] == ["ok fine now I am just happy", "so sad"]  # saved before the record: last 3 turns


def test_ensemble_means_member_probabilities_saves_loads_and_checks_members(isolated_cache, tmp_path):
    import json

    from empathkit.classifiers.ensemble import EnsembleClassifier

    W1, b = keyword_head(LABELS, {"sad": "sad", "happy": "joyful", "angry": "angry"})
    W2, _ = keyword_head(LABELS, {"sad": "angry", "happy": "joyful", "angry": "sad"})
    ens_dir = classifier_dir("emotion")
    for name, W in (("member-0", W1), ("member-1", W2)):
        TextClassifier(ClassifierConfig(kind="emotion", labels=LABELS, encoder="minilm-l6"), W, b).save(ens_dir / name)
    members = [TextClassifier.load(ens_dir / n) for n in ("member-0", "member-1")]
    for m in members:
        m._encoder = KeywordEncoder()
    ens = EnsembleClassifier(members)
    p = ens.predict_proba(["I am sad"])
    assert np.allclose(p, (members[0].predict_proba(["I am sad"]) + members[1].predict_proba(["I am sad"])) / 2)
    assert p[0, 0] == pytest.approx(p[0, 2]) and ens.predict(["so happy"])[0][0] == "joyful"
    ens.save(ens_dir, ["member-0", "member-1"])
    assert is_trained("emotion")
    loaded = load_classifier("emotion")
    assert isinstance(loaded, EnsembleClassifier) and loaded.config.extra["members"] == 2
    # bad descriptions name the file and field; members must agree on labels
    (ens_dir / "ensemble.json").write_text(json.dumps({"members": ["../x"]}))
    with pytest.raises(DataError, match="ensemble.json.*members"):
        TextClassifier.load(ens_dir)
    odd = TextClassifier(ClassifierConfig(kind="emotion", labels=["a", "b"]), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(DataError, match="disagree"):
        EnsembleClassifier([members[0], odd])
