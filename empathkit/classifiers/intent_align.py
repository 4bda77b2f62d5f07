"""Align EmpatheticIntents' labels with ED listener turns (for Acc_intent and the intent classifier's card).

EmpatheticIntents ships the whole ED corpus automatically annotated by its authors' BERT classifier
(``empatheticdialogues_annotated/<emotion>.csv``): one row per utterance, in order, keyed by ``Dialog_ID`` = ED
``conv_id``. An empathkit example id is ``<conv_id>#<i>`` with ``i`` the 0-based utterance index of the target,
so the gold intent of a reference listener turn is row ``i`` of that conversation. Listener rows whose label is one
of the 32 emotions (the annotator's classifier may give an emotion instead of an intent; ~18 % of listener turns)
have no intent label and are left out of Acc_intent (``coverage`` reports the share kept).
"""

from __future__ import annotations

import functools
from typing import Sequence

from empathkit.classifiers.data import INTENT_LABELS, ed_listener_intents


@functools.lru_cache(maxsize=2)
def _annotations(root: str | None = None) -> dict[str, list[tuple[str, str]]]:
    return ed_listener_intents(root)


def reference_intents(ids: Sequence[str], root: str | None = None) -> list[str | None]:
    """Gold EmpatheticIntents label (one of the 9 intent labels) of each example's reference, or None."""
    ann = _annotations(root)
    out: list[str | None] = []
    for ex_id in ids:
        conv, _, idx = str(ex_id).rpartition("#")
        rows = ann.get(conv)
        lab = None
        if rows is not None and idx.isdigit() and int(idx) < len(rows):
            actor, label = rows[int(idx)]
            if actor == "listener" and label in INTENT_LABELS:
                lab = label
        out.append(lab)
    return out


def agreement_on_ed(clf, split: str = "test", limit: int | None = None) -> dict[str, float]:
    """Accuracy / macro-F1 of ``clf`` against the EmpatheticIntents labels of ED ``split`` listener turns."""
    from sklearn.metrics import accuracy_score, f1_score

    from empathkit.data import load_examples

    exs = load_examples("ed", split, "every-listener", limit=limit)
    gold = reference_intents([e.id for e in exs])
    keep = [(e.target, g) for e, g in zip(exs, gold) if g is not None]
    pred = [lab for lab, _ in clf.predict([t for t, _ in keep])]
    y = [g for _, g in keep]
    return {"accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=list(INTENT_LABELS), average="macro", zero_division=0)),
            "n": float(len(keep)), "coverage": float(len(keep) / max(1, len(exs)))}
