"""Acc_emo, EA-F1, EC, Emp-F1, DIFF-EPITOME and Acc_intent on stub classifiers, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empathkit.errors import ResourceMissing
from empathkit.metrics import METRICS
from empathkit.metrics.base import Batch
from empathkit.metrics.resources import Resources


class Stub:
    """Keyword classifier with the shared predict API (labels / predict / predict_labels / predict_proba)."""

    def __init__(self, labels, rules, default, pair=False):
        self.labels, self.rules, self.default, self.pair = labels, rules, default, pair

    def _labs(self, x):
        text = (x[1] if self.pair else x).lower()
        return [lab for kw, lab in self.rules if kw in text] or [self.default]

    def predict(self, inputs, batch_size=64, show_progress=False):
        return [(self._labs(x)[0], 0.9) for x in inputs]

    def predict_labels(self, inputs, threshold=None, fallback=None, batch_size=64):
        return [self._labs(x) for x in inputs]


class StubResources(Resources):
    def __init__(self, classifiers, **cfg):
        super().__init__(cfg)
        self._c = classifiers

    def classifier(self, name):
        if name not in self._c:
            raise ResourceMissing(f"no {name}")
        return self._c[name]


GO = ["joy", "sadness", "fear", "neutral"]


def go_stub():
    return Stub(GO, [("glad", "joy"), ("sorry", "sadness"), ("scary", "fear")], "neutral")


def run(name, batch, res, **opts):
    return METRICS.get(name).fn(batch, res, **opts)


def test_all_six_metrics_are_registered():
    for m in ("acc-emo", "ea-f1", "ec", "ec-v1", "emp-f1", "diff-epitome", "acc-intent", "acc-intent-ref"):
        assert m in METRICS


def test_acc_emo_uses_predicted_emotion_and_skips_without():
    b = Batch(["a", "b", "c"], ["x", "y", "z"], emotions=["sad", "joyful", "angry"],
              extra={"predicted_emotion": ["sad", "Sad", None]})
    r = run("acc-emo", b, None)
    assert r.aggregate["acc-emo"] == 0.5 and math.isnan(r.per_example["acc-emo"][2])
    with pytest.raises(ResourceMissing, match="predicted_emotion"):
        run("acc-emo", Batch(["a"], ["b"], emotions=["sad"]), None)


def test_ea_f1_is_macro_f1_over_label_sets():
    # refs: {sadness}, {joy}, {neutral}; hyps: {sadness}, {neutral}, {neutral}
    b = Batch(["so sorry", "ok", "hm"], ["I am sorry", "glad to hear", "fine"])
    r = run("ea-f1", b, StubResources({"goemotions": go_stub()}))
    # per label F1: sadness 1, joy 0 (1 FN), neutral 2/3 (TP 1, FP 1); fear occurs nowhere
    assert r.aggregate["ea-f1"] == pytest.approx((1 + 0 + 2 / 3) / 3)
    r_all = run("ea-f1", b, StubResources({"goemotions": go_stub()}), label_set="all")
    assert r_all.aggregate["ea-f1"] == pytest.approx((1 + 0 + 2 / 3 + 0) / 4)  # fear counts as 0 (zero_division=0)
    assert r.per_example["ea-f1-example"] == [1.0, 0.0, 1.0]


def test_ec_cosine_of_vad_clamped(tmp_path):
    lex = tmp_path / "vad.txt"
    lex.write_text("term\tvalence\tarousal\tdominance\nsad\t-0.5\t-0.3\t-0.7\nsadness\t-0.6\t-0.3\t-0.6\n"
                   "joy\t0.9\t0.6\t0.6\nneutral\t0\t-0.6\t-0.3\nanticipation\t0.4\t0.1\t0.4\n", encoding="utf-8")
    b = Batch(["so sorry", "glad!", "hmm"], ["r1", "r2", "r3"], emotions=["sad", "sad", "anticipating"])
    r = run("ec", b, StubResources({"goemotions": go_stub()}), vad_path=str(lex))
    sad, sadness, joy, neu, ant = (np.array(v) for v in ([-0.5, -0.3, -0.7], [-0.6, -0.3, -0.6], [0.9, 0.6, 0.6],
                                                         [0, -0.6, -0.3], [0.4, 0.1, 0.4]))
    cos = lambda a, c: float(a @ c / np.linalg.norm(a) / np.linalg.norm(c))  # noqa: E731
    expect = [cos(sad, sadness), 0.0, max(0.0, cos(ant, neu))]  # sad vs joy is negative → clamped to 0
    assert cos(sad, joy) < 0
    np.testing.assert_allclose(r.per_example["ec"], expect, rtol=1e-6)
    assert r.aggregate["ec"] == pytest.approx(np.mean(expect))
    with pytest.raises(ResourceMissing, match="gold emotion"):
        run("ec", Batch(["x"], ["y"]), StubResources({"goemotions": go_stub()}), vad_path=str(lex))


def epitome_stubs():
    lv = ["0", "1", "2"]
    return {"epitome-er": Stub(lv, [("so sorry", "2"), ("sorry", "1")], "0", pair=True),
            "epitome-ip": Stub(lv, [("understand", "2")], "0", pair=True),
            "epitome-ex": Stub(lv, [("?", "2")], "0", pair=True)}


def test_emp_f1_and_diff_epitome_hand_computed():
    b = Batch(["so sorry. what happened?", "ok", "I understand"],
              ["sorry, what happened?", "I understand, so sorry", "I understand"],
              contexts=[["s1"], ["s2", "l2", "s3"], ["s4"]])
    res = StubResources(epitome_stubs())
    # ER hyp 2,0,0 ref 1,2,0 | IP hyp 0,0,2 ref 0,2,2 | EX hyp 2,0,0 ref 2,0,0
    d = run("diff-epitome", b, res)
    assert d.aggregate["diff-er"] == pytest.approx((1 + 4 + 0) / 3)
    assert d.aggregate["diff-ip"] == pytest.approx((0 + 4 + 0) / 3)
    assert d.aggregate["diff-ex"] == 0.0
    assert d.aggregate["diff-epitome"] == pytest.approx((5 / 3 + 4 / 3) / 3)
    assert run("diff-epitome", b, res, power=1).aggregate["diff-er"] == pytest.approx(1.0)
    from sklearn.metrics import f1_score

    e = run("emp-f1", b, res)
    er = f1_score([1, 2, 0], [2, 0, 0], average="weighted", labels=[0, 1, 2], zero_division=0)
    ip = f1_score([0, 2, 2], [0, 0, 2], average="weighted", labels=[0, 1, 2], zero_division=0)
    assert e.aggregate["emp-f1-er"] == pytest.approx(er)
    assert e.aggregate["emp-f1-ex"] == 1.0
    assert e.aggregate["emp-f1"] == pytest.approx((er + ip + 1.0) / 3)


def test_seeker_post_modes():
    from empathkit.metrics.epitome import seeker_post

    ctx = ["s1", "l1", "s2"]
    assert seeker_post(ctx) == "s2"
    assert seeker_post(ctx, "speaker-turns") == "s1 s2"
    assert seeker_post(ctx, "context") == "s1 l1 s2"
    assert seeker_post([]) == ""
    with pytest.raises(Exception, match="unknown seeker mode"):
        seeker_post(ctx, "bogus")


def _annotated_root(tmp_path):
    d = tmp_path / "data" / "empathetic_intents" / "empatheticdialogues_annotated"
    d.mkdir(parents=True)
    (d / "sad.csv").write_text(
        "Dialog_ID,Type,Actor,Text,Label\n"
        "hit:1_conv:2,situation,none,A made-up situation,sad\n"
        "hit:1_conv:2,utterance,speaker,My plant died.,sad\n"
        "hit:1_conv:2,utterance,listener,\"Oh no, what happened?\",questioning\n"
        "hit:1_conv:2,utterance,speaker,I forgot to water it.,guilty\n"
        "hit:1_conv:2,utterance,listener,That is sad.,sad\n"
        "hit:1_conv:2,utterance,speaker,Yes.,neutral\n"
        "hit:1_conv:2,utterance,listener,I hope the next one thrives.,wishing\n"
        "hit:1_conv:2 (1),utterance,speaker,dup,sad\n", encoding="utf-8")
    return tmp_path / "data"


def test_acc_intent_aligns_ids_with_empathetic_intents(tmp_path):
    from empathkit.classifiers import intent_align

    intent_align._annotations.cache_clear()
    root = _annotated_root(tmp_path)
    intent = Stub(["questioning", "wishing", "neutral"], [("?", "questioning"), ("hope", "wishing")], "neutral")
    res = StubResources({"intent": intent}, data_root=str(root))
    ids = ["hit:1_conv:2#1", "hit:1_conv:2#3", "hit:1_conv:2#5", "other#1", "hit:1_conv:2#0"]
    b = Batch(["Why?", "no idea", "good luck", "x", "y"], ["r"] * 5, ids=ids)
    r = run("acc-intent", b, res)
    # #1 gold questioning (hit), #3 gold 'sad' (emotion → excluded), #5 gold wishing (miss), others unaligned
    assert r.aggregate["acc-intent"] == 0.5
    assert r.info["n_scored"] == 2 and r.info["coverage"] == pytest.approx(0.4)
    with pytest.raises(ResourceMissing, match="acc-intent-ref"):
        run("acc-intent", Batch(["a"], ["b"], ids=["nope"]), res)
    ref = run("acc-intent-ref", Batch(["why?", "hm"], ["how?", "I hope so"]), res)
    assert ref.per_example["acc-intent-ref"] == [1.0, 0.0]
    intent_align._annotations.cache_clear()


def test_metrics_skip_cleanly_when_classifier_missing(tmp_path, monkeypatch):
    from empathkit.classifiers import _LOADED

    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("EMPATHKIT_CLASSIFIER_GOEMOTIONS", raising=False)
    _LOADED.clear()
    with pytest.raises(ResourceMissing, match="classifiers train goemotions"):
        run("ea-f1", Batch(["a"], ["b"]), None)


@pytest.mark.integration
def test_real_classifiers_on_identical_responses():
    """With the real trained classifiers (skipped when absent): a response equal to its reference scores perfectly."""
    from empathkit.classifiers import is_trained

    kinds = ("goemotions", "epitome-er", "epitome-ip", "epitome-ex")
    if not all(is_trained(k) for k in kinds):
        pytest.skip("goemotions / epitome classifiers not trained (empathkit classifiers train)")
    refs = ["I am so sorry for your loss, that must be heartbreaking.", "Wow, congratulations! How did you celebrate?",
            "That sounds scary. Are you okay now?", "I would be furious too."]
    b = Batch(list(refs), list(refs), contexts=[["My grandmother passed away."], ["I got the job!"],
                                                ["A car nearly hit me today."], ["My roommate ate my food again."]],
              emotions=["devastated", "excited", "terrified", "annoyed"])
    res = Resources()
    assert run("ea-f1", b, res).aggregate["ea-f1"] == 1.0
    ec = run("ec", b, res).aggregate["ec"]
    assert 0.0 <= ec <= 1.0
    assert run("diff-epitome", b, res).aggregate["diff-epitome"] == 0.0
    assert run("emp-f1", b, res).aggregate["emp-f1"] == 1.0
    other = Batch(["ok."] * 4, list(refs), contexts=b.contexts, emotions=b.emotions)
    assert run("diff-epitome", other, res).aggregate["diff-epitome"] >= 0.0
