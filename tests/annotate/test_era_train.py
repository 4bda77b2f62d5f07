"""ERA training on a tiny annotated file with a tiny random BERT: early stopping, best checkpoint, card, scores."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


def test_train_era_tiny(dialogues, tmp_path):
    from empathkit.annotate.era.model import ERA, tiny_random_era
    from empathkit.annotate.era.train import ERATrainConfig, train_era
    from empathkit.annotate.pipeline import Annotator, annotate
    from empathkit.types import Dialogue

    from _annotate_fakes import FixedIntents

    class SpeakerWords:  # a teacher that tags words of the fixture's speaker turns
        annotator = "kw@1"

        def tag(self, tokens):
            return [["<em>" if w.lower() in ("job", "cat", "car", "noises", "brother", "nobody", "passed") else
                     "<noem>" for w in t] for t in tokens]

    ds = [Dialogue(d.id, d.emotion, d.situation, d.turns, ("train", "valid", "test")[i % 3]) for i, d in enumerate(dialogues)]
    src = tmp_path / "a.jsonl"
    annotate(ds, Annotator(SpeakerWords(), FixedIntents(), "kw"), src, progress=False, derive_map=False)
    cfg = ERATrainConfig(epochs=30, batch_size=4, lr=1e-3, head_lr=1e-2, eval_every=5, patience=2, warmup=0.0)
    m = train_era(src, tmp_path / "era", cfg, progress=False, model=tiny_random_era(seed=0))
    assert m["teacher"] == "kw@1+fixed@1" and m["sizes"]["train"] > 0 and m["history"]
    assert m["best_valid_token_f1"] == max(h["valid_token_f1"] for h in m["history"])
    assert m["test"]["token"]["f1"] > 0.5  # the keyword teacher is easy to learn
    era = ERA.load(tmp_path / "era")
    assert era.config.extra["teacher"] == "kw@1+fixed@1"
    card = (tmp_path / "era" / "card.md").read_text()
    assert "token (`<em>`)" in card and "span (exact)" in card
    assert json.loads((tmp_path / "era" / "train_config.json").read_text())["config"]["seed"] == 0
