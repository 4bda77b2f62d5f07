"""Agreement scores for reason tags and intents: token-level P/R/F1 of ``<em>``, exact span F1, accuracy / kappa."""

from __future__ import annotations

from typing import Sequence


def spans(tags: Sequence[str]) -> set[tuple[int, int]]:
    """Maximal runs of ``<em>`` as ``(start, end)`` (end exclusive)."""
    out, start = set(), None
    for i, t in enumerate(list(tags) + ["<noem>"]):
        if t == "<em>" and start is None:
            start = i
        elif t != "<em>" and start is not None:
            out.add((start, i))
            start = None
    return out


def _prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def token_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro P/R/F1 of the ``<em>`` tag over all tokens (sequences must align), plus token accuracy."""
    tp = n_pred = n_gold = same = total = 0
    for g, p in zip(gold, pred, strict=True):
        if len(g) != len(p):
            raise ValueError(f"tag sequences of different lengths ({len(g)} vs {len(p)})")
        for a, b in zip(g, p):
            tp += a == b == "<em>"
            n_pred += b == "<em>"
            n_gold += a == "<em>"
            same += a == b
            total += 1
    return _prf(tp, n_pred, n_gold) | {"accuracy": same / total if total else 0.0, "tokens": float(total)}


def span_prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]]) -> dict[str, float]:
    """Exact-match span P/R/F1 (a predicted span counts when its start and end equal a gold span's)."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        gs, ps = spans(g), spans(p)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
    return _prf(tp, n_pred, n_gold) | {"spans_gold": float(n_gold), "spans_pred": float(n_pred)}


def label_agreement(a: Sequence[str], b: Sequence[str]) -> dict[str, float]:
    """Accuracy and Cohen's kappa of two label sequences (scikit-learn)."""
    from sklearn.metrics import cohen_kappa_score

    if not a:
        return {"accuracy": 0.0, "kappa": 0.0, "n": 0.0}
    acc = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    return {"accuracy": acc, "kappa": float(cohen_kappa_score(list(a), list(b))), "n": float(len(a))}
