"""Token / span P/R/F1 of reason tags and label agreement."""

from __future__ import annotations

import pytest

from empathkit.annotate.scores import label_agreement, span_prf, spans, token_prf


def test_scores():
    g = [["<em>", "<em>", "<noem>", "<em>"], ["<noem>"]]
    p = [["<em>", "<noem>", "<noem>", "<em>"], ["<em>"]]
    assert spans(g[0]) == {(0, 2), (3, 4)}
    t = token_prf(g, p)
    assert t["precision"] == pytest.approx(2 / 3) and t["recall"] == pytest.approx(2 / 3) and t["accuracy"] == 0.6
    s = span_prf(g, p)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 2)
    assert label_agreement(["a", "b", "a"], ["a", "b", "a"])["kappa"] == 1.0
    with pytest.raises(ValueError, match="different lengths"):
        token_prf([["<em>"]], [["<em>", "<noem>"]])
