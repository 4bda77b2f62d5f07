"""Held-out scores of the auxiliary classifiers, shared by both training paths.

``train.py`` (frozen features: logistic regression / MLP heads, and ``train_kind``, which dispatches to fine-tuning)
and ``finetune.py`` (fine-tuned MiniLM, seed ensembles) both score with these functions; keeping them here lets the
dependencies point one way: ``scoring`` ← ``finetune`` ← ``train``.
"""

from __future__ import annotations

from empathkit.classifiers.core import LabelPredictions


def scores(y_true, y_pred, labels: list[str], multi: bool) -> dict[str, float]:
    """Accuracy / macro-F1 / weighted-F1 (single-label) or macro-F1 / micro-F1 / exact match (multi-label, binary
    indicator matrices)."""
    from sklearn.metrics import accuracy_score, f1_score

    if multi:
        return {"macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
                "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
                "exact_match": float(accuracy_score(y_true, y_pred))}
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))}


def evaluate(clf: LabelPredictions, inputs: list, labels: list, threshold: float | None = None) -> dict[str, float]:
    """Held-out scores of a (loaded) classifier — single or ensemble — on raw inputs."""
    if clf.config.multi_label:
        from sklearn.preprocessing import MultiLabelBinarizer

        mlb = MultiLabelBinarizer(classes=clf.labels)
        thr = clf.config.threshold if threshold is None else threshold
        pred = (clf.predict_proba(inputs) >= thr).astype(int)
        return scores(mlb.fit_transform(labels), pred, clf.labels, True)
    return scores(list(labels), [lab for lab, _ in clf.predict(inputs)], clf.labels, False)
