"""The emotion → intent map: the paper's Table 1 built in, derived maps, comparison, heatmap."""

from __future__ import annotations

from collections import Counter

import pytest

from empathkit.annotate.intents import (INTENTS, PAPER_TABLE1_FILLED, compare_with_paper, derive_intent_map,
                                        intent_map, plot_heatmap, save_intent_map)
from empathkit.data.emotions import EMOTIONS
from empathkit.errors import ConfigError, DataError
from empathkit.types import Dialogue, Turn, TurnAnnotation


def test_paper_table1_covers_all_emotions():
    m = intent_map()
    assert set(m) == set(EMOTIONS)
    assert m["angry"] == ["consoling", "suggesting", "encouraging"]
    assert m["hopeful"] == ["encouraging", "wishing", "consoling"]
    assert m["faithful"] == ["acknowledging", "encouraging", "neutral"]  # first of its two printed groups
    assert m["furious"] == m["angry"] and m["devastated"] == m["sad"]
    assert all(set(v) <= set(INTENTS) and len(v) == 3 for v in m.values())
    assert intent_map(n=1)["sad"] == ["consoling"]
    with pytest.raises(ConfigError, match="n <= 3"):
        intent_map(n=4)
    with pytest.raises(ConfigError, match="unknown intent map"):
        intent_map("nope")


def _dlg(i, emotion, intents):
    turns = []
    for k, it in enumerate(intents):
        turns += [Turn("speaker", "x", TurnAnnotation(("x",), ("<noem>",))),
                  Turn("listener", "y", TurnAnnotation(("y",), ("<noem>",), intent=it))]
    return Dialogue(f"d{i}", emotion, "", tuple(turns))


def test_derived_map_save_load_and_compare(tmp_path):
    ds = [_dlg(0, "sad", ["consoling", "consoling", "questioning"]), _dlg(1, "sad", ["questioning", "neutral"]),
          _dlg(2, "joyful", ["acknowledging", "encouraging", "encouraging"])]
    assert derive_intent_map(ds, n=2) == {"joyful": ["encouraging", "acknowledging"], "sad": ["consoling", "questioning"]}
    p = tmp_path / "m.json"
    save_intent_map(ds, p, "test@1")
    assert intent_map(p, n=3)["sad"] == ["consoling", "questioning", "neutral"]
    assert intent_map(p, n=3, exclude=("questioning",))["sad"] == ["consoling", "neutral"]
    cmp = compare_with_paper(intent_map(p))
    assert cmp["emotions"] == 2 and cmp["overlap_per_emotion"] == {"sad": 2, "joyful": 2}
    assert "sad" not in PAPER_TABLE1_FILLED
    bad = tmp_path / "bad.json"
    bad.write_text('{"ranking": {"sad": ["hugging"]}}')
    with pytest.raises(DataError, match="ranking.sad"):
        intent_map(bad)


def test_heatmap_png(tmp_path):
    out = plot_heatmap({"sad": Counter(consoling=3), "joyful": Counter(encouraging=1)}, tmp_path / "h.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
