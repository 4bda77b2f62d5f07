"""The quick demo emotion classifier (classifiers/quick.py): kept when one is trained, trained otherwise, replaced by
the full `classifiers train` (--skip-trained does not count it)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import requires_data
from empathkit.classifiers import _LOADED, classifier_dir, is_trained
from empathkit.classifiers.core import ClassifierConfig, TextClassifier
from empathkit.classifiers.quick import QUICK_LINEAR, ensure_quick_emotion, is_quick_folder, train_quick_emotion

LABELS = ["sad", "joyful"]


def fake_trained(variant: str | None) -> None:
    import numpy as np

    folder = TextClassifier(ClassifierConfig(kind="emotion", labels=LABELS), np.zeros((2, 3)), np.zeros(2)).save(
        classifier_dir("emotion"))
    (folder / "metrics.json").write_text(json.dumps({"variant": variant, "method": "x", "test": {"accuracy": 0.5}}))


def test_a_trained_classifier_is_kept_and_a_missing_one_is_trained(isolated_cache, monkeypatch):
    import empathkit.classifiers.quick as Q

    calls = []

    def fake_train(seed=0, root=None, sizes=None, out_dir=None):
        calls.append(seed)
        fake_trained("demo-quick")
        return {"variant": "demo-quick", "test": {"accuracy": 0.4}, "train_seconds": 1.0}

    monkeypatch.setattr(Q, "train_quick_emotion", fake_train)
    r = ensure_quick_emotion(seed=3)
    assert (r.status, r.is_quick, r.accuracy, calls) == ("trained", True, 0.4, [3]) and is_trained("emotion")
    assert is_quick_folder(classifier_dir("emotion"))
    r = ensure_quick_emotion()
    assert (r.status, r.is_quick, calls) == ("kept", True, [3])  # a second demo run costs nothing
    fake_trained(None)  # the full classifier: never overwritten by the demo
    r = ensure_quick_emotion()
    assert (r.status, r.is_quick, calls) == ("kept", False, [3]) and not is_quick_folder(classifier_dir("emotion"))


def test_skip_trained_replaces_the_quick_classifier_but_keeps_a_full_one(isolated_cache, monkeypatch):
    from typer.testing import CliRunner

    import empathkit.classifiers.train as T
    from empathkit.cli.main import app

    trained = []

    def fake_train_kind(kind, **kw):
        trained.append((kind, kw.get("method")))
        return {"method": kw.get("method"), "test": {"accuracy": 0.5}, "train_seconds": 1}

    monkeypatch.setattr(T, "train_kind", fake_train_kind)
    fake_trained("demo-quick")
    r = CliRunner().invoke(app, ["classifiers", "train", "emotion", "--skip-trained", "--members", "1"])
    assert r.exit_code == 0, r.output
    assert trained == [("emotion", "finetune")]
    fake_trained(None)
    r = CliRunner().invoke(app, ["classifiers", "train", "emotion", "--skip-trained"])
    assert "already trained, skipped" in r.output and len(trained) == 1
    r = CliRunner().invoke(app, ["classifiers", "train", "intent", "--demo"])
    assert r.exit_code != 0 and "emotion classifier only" in r.output


@requires_data
@pytest.mark.integration
def test_quick_classifier_on_real_data_writes_its_card(tmp_path, one_torch_thread):
    out = tmp_path / "emotion"
    m = train_quick_emotion(out_dir=out, sizes={"train": 300, "valid": 40, "test": 120})
    assert m["variant"] == "demo-quick" and m["data"]["sizes"] == {"train": 300, "valid": 40, "test": 120}
    assert m["selection"]["C"] == QUICK_LINEAR["c_grid"][0] and len(m["selection"]["trials"]) == 1
    assert 0.0 < m["test"]["accuracy"] <= 1.0 and is_quick_folder(out)
    card = (out / "card.md").read_text()
    assert "Quick demo classifier" in card and f"{m['test']['accuracy']:.3f}" in card
    clf = TextClassifier.load(out)
    (label, prob), = clf.predict(["My dog died this morning and I can't stop crying."])
    assert label in clf.labels and 0 < prob <= 1
