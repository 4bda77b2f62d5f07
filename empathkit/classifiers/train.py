"""Train the auxiliary classifiers: frozen MiniLM embeddings + scikit-learn logistic regression (default) or a short
fine-tune of MiniLM + linear head (``method="finetune"``). Writes weights (safetensors), ``config.json``,
``metrics.json``, ``card.md`` and run metadata (``config.yaml``, ``versions.json``, ``seed``) into
``cache_dir()/classifiers/<kind>/``.

Why logistic regression: it is scikit-learn's maintained multinomial / one-vs-rest solver; its coefficients are
copied into the shared linear head (``head.safetensors``), so no pickle/joblib file is ever written.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from empathkit.classifiers.core import ClassifierConfig, TextClassifier, pair_features, shared_encoder
from empathkit.classifiers.scoring import evaluate  # noqa: F401  (re-exported: train.evaluate)
from empathkit.classifiers.scoring import scores as _scores
from empathkit.errors import ConfigError

log = logging.getLogger(__name__)

C_GRID = (0.25, 1.0, 4.0)
# validation scores closer than this count as equal when choosing C (see choose_trial)
SELECT_TOLERANCE = 0.01


def _features(clf_cfg: ClassifierConfig, inputs: list, encoder, desc: str) -> np.ndarray:
    """Embed ``inputs`` through a temporary classifier object (same preprocessing as at prediction time)."""
    tmp = TextClassifier(clf_cfg, np.zeros((len(clf_cfg.labels), 1)), np.zeros(len(clf_cfg.labels)), encoder=encoder)
    log.info("embedding %d %s inputs …", len(inputs), desc)
    return tmp.features(inputs, batch_size=64, show_progress=f"embedding {desc} inputs" if len(inputs) > 2000 else False)


def _store_paths(encoder_name: str, max_seq_length: int) -> tuple[Path, Path]:
    from empathkit.classifiers import classifier_dir

    base = classifier_dir("emotion").parent / "_embeddings" / f"{encoder_name.replace('/', '_')}-{max_seq_length}"
    return base.with_suffix(".texts.json"), base.with_suffix(".npy")


def load_embedding_store(encoder, encoder_name: str, max_seq_length: int) -> int:
    """Fill ``encoder.memo`` from the on-disk embedding store (JSON texts + .npy matrix, no pickle).

    Training runs and re-runs reuse embeddings of identical texts (the encoder is frozen), which matters on a
    shared 2-core machine; delete ``cache_dir()/classifiers/_embeddings`` to recompute."""
    tp, ap = _store_paths(encoder_name, max_seq_length)
    if not (tp.is_file() and ap.is_file()):
        return 0
    texts = json.loads(tp.read_text(encoding="utf-8"))
    arr = np.load(ap, allow_pickle=False)
    if len(texts) != len(arr):
        log.warning("embedding store %s is inconsistent; ignored", ap)
        return 0
    for t, v in zip(texts, arr):
        encoder.memo.setdefault(t, v)
    return len(texts)


def save_embedding_store(encoder, encoder_name: str, max_seq_length: int) -> None:
    tp, ap = _store_paths(encoder_name, max_seq_length)
    tp.parent.mkdir(parents=True, exist_ok=True)
    texts = list(encoder.memo)
    np.save(ap.with_suffix(".tmp.npy"), np.stack([encoder.memo[t] for t in texts]) if texts else np.zeros((0, 1)))
    tp.with_suffix(".tmp").write_text(json.dumps(texts), encoding="utf-8")
    ap.with_suffix(".tmp.npy").replace(ap)
    tp.with_suffix(".tmp").replace(tp)


def fit_linear_head(X: dict[str, np.ndarray], y: dict[str, list], labels: list[str], multi: bool, seed: int,
                    threshold: float = 0.5, select_on: str = "macro_f1", class_weights=(None, "balanced"),
                    c_grid=C_GRID, tolerance: float = SELECT_TOLERANCE) -> tuple[np.ndarray, np.ndarray, dict]:
    """Fit logistic regression for each C (× class weight) on train and choose on valid by ``select_on`` with
    :func:`choose_trial` (the most regularised fit within ``tolerance`` of the best)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import MultiLabelBinarizer

    if multi:
        mlb = MultiLabelBinarizer(classes=labels)
        Y = {s: mlb.fit_transform(v) for s, v in y.items()}
    else:
        Y = {s: np.array([labels.index(v) for v in vals]) for s, vals in y.items()}
    fits, trials = [], []
    for cw in (class_weights if not multi else (None,)):
        for C in c_grid:
            lr = LogisticRegression(C=C, max_iter=2000, class_weight=cw, random_state=seed)
            if multi:
                model = OneVsRestClassifier(lr, n_jobs=1).fit(X["train"], Y["train"])
                W = np.vstack([e.coef_ for e in model.estimators_])
                b = np.concatenate([e.intercept_ for e in model.estimators_])
            else:
                present = sorted(set(Y["train"].tolist()))
                model = lr.fit(X["train"], Y["train"])
                W = np.full((len(labels), X["train"].shape[1]), 0.0)
                b = np.full(len(labels), -1e4)  # a class absent from train can never be predicted
                if len(present) == 2 and model.coef_.shape[0] == 1:  # sklearn's binary special case
                    W[present[1]], b[present[1]] = model.coef_[0], model.intercept_[0]
                    b[present[0]] = 0.0
                else:
                    W[present], b[present] = model.coef_, model.intercept_
            val = _evaluate_head(W, b, X["valid"], Y["valid"], labels, multi, threshold)
            trials.append({"C": C, "class_weight": cw, **{f"valid_{k}": v for k, v in val.items()}})
            log.info("  C=%s class_weight=%s valid %s", C, cw, val)
            fits.append((W, b))
    k = choose_trial(trials, f"valid_{select_on}", tolerance)
    W, b = fits[k]
    return W.astype(np.float32), b.astype(np.float32), {
        "C": trials[k]["C"], "class_weight": trials[k]["class_weight"], "trials": trials,
        "selected_on": f"valid {select_on}: smallest C within {tolerance} of the best"}


def choose_trial(trials: list[dict], key: str, tolerance: float = SELECT_TOLERANCE) -> int:
    """Index of the trial to keep: among those whose ``key`` is within ``tolerance`` of the best, the smallest C
    (the most regularised fit), earlier trials first on equal C. Plain arg-max flipped between two CPUs on
    validation differences of 0.003 macro-F1 (338 examples): float noise in the embeddings, not a real preference."""
    best = max(t[key] for t in trials)
    near = [i for i, t in enumerate(trials) if t[key] >= best - tolerance]
    return min(near, key=lambda i: (trials[i]["C"], i))


def fit_mlp_head(X: dict[str, np.ndarray], y: dict[str, list], labels: list[str], seed: int,
                 hidden: int = 512, alphas=(1e-3, 1e-2)) -> tuple[np.ndarray, np.ndarray, tuple, dict]:
    """Single-label MLP head (one ReLU layer, scikit-learn ``MLPClassifier`` with early stopping), chosen on valid
    accuracy over ``alphas``; its weights are copied into the head tensors (no pickle)."""
    from sklearn.neural_network import MLPClassifier

    Y = {s: np.array([labels.index(v) for v in vals]) for s, vals in y.items()}
    best, trials = None, []
    for alpha in alphas:
        m = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha, early_stopping=True, max_iter=200,
                          random_state=seed).fit(X["train"], Y["train"])
        present = list(m.classes_)
        W = np.zeros((len(labels), hidden))
        b = np.full(len(labels), -1e4)
        W[present], b[present] = m.coefs_[1].T, m.intercepts_[1]
        hid = (m.coefs_[0].T, m.intercepts_[0])
        H = np.maximum(X["valid"] @ hid[0].T + hid[1], 0)
        val = _evaluate_head(W, b, H, Y["valid"], labels, False, 0.5)
        trials.append({"alpha": alpha, **{f"valid_{k}": v for k, v in val.items()}})
        log.info("  mlp hidden=%d alpha=%s valid %s", hidden, alpha, val)
        if best is None or val["accuracy"] > best[0]:
            best = (val["accuracy"], W, b, hid, alpha)
    _, W, b, hid, alpha = best  # type: ignore[misc]
    return (W.astype(np.float32), b.astype(np.float32), (hid[0].astype(np.float32), hid[1].astype(np.float32)),
            {"hidden": hidden, "alpha": alpha, "trials": trials, "selected_on": "valid accuracy"})


def _evaluate_head(W, b, X, Y, labels, multi, threshold) -> dict[str, float]:
    logits = X @ W.T + b
    if multi:
        pred = (1 / (1 + np.exp(-logits)) >= threshold).astype(int)
        return _scores(Y, pred, labels, True)
    pred = logits.argmax(axis=1)
    return _scores([labels[i] for i in Y], [labels[i] for i in pred], labels, False)


# --- kinds ----------------------------------------------------------------------------------------------------------

def train_linear(kind: str, config: ClassifierConfig, splits: dict, info: dict, out_dir: Path, seed: int,
                 select_on: str = "macro_f1", encoder_name: str = "minilm-l6", use_store: bool = True,
                 head: str = "linear", c_grid=C_GRID, class_weights=(None, "balanced")) -> dict[str, Any]:
    encoder = shared_encoder(encoder_name, config.max_seq_length)
    if use_store:
        load_embedding_store(encoder, encoder_name, config.max_seq_length)
    t0 = time.time()
    X = {}
    for s in ("train", "valid", "test"):
        X[s] = _features(config, splits[s][0], encoder, f"{kind} {s}")
        if use_store:
            save_embedding_store(encoder, encoder_name, config.max_seq_length)
    t_embed = time.time() - t0
    y = {s: splits[s][1] for s in X}
    hidden = None
    if head == "mlp":
        W, b, hidden, sel = fit_mlp_head(X, y, config.labels, seed)
        X = {s: np.maximum(v @ hidden[0].T + hidden[1], 0) for s, v in X.items()}
    else:
        W, b, sel = fit_linear_head(X, y, config.labels, config.multi_label, seed, config.threshold, select_on,
                                    class_weights=class_weights, c_grid=c_grid)
    clf = TextClassifier(config, W, b, encoder=encoder, hidden=hidden)
    Ytest = y["test"]
    if config.multi_label:
        from sklearn.preprocessing import MultiLabelBinarizer

        test = _evaluate_head(W, b, X["test"], MultiLabelBinarizer(classes=config.labels).fit_transform(Ytest),
                              config.labels, True, config.threshold)
    else:
        test = _evaluate_head(W, b, X["test"], np.array([config.labels.index(v) for v in Ytest]), config.labels, False,
                              config.threshold)
    clf.save(out_dir)
    return {"method": "frozen-minilm+" + ("mlp" if head == "mlp" else "logreg"), "test": test, "selection": sel, "embed_seconds": round(t_embed, 1)}


def _emotion_config(input_turns: int | None = None) -> ClassifierConfig:
    from empathkit.data.emotions import EMOTIONS

    what = f"last {input_turns} context turns" if input_turns else "whole dialogue context"
    return ClassifierConfig(kind="emotion", labels=list(EMOTIONS), input="text", max_seq_length=128,
                            extra={"input_format": f"{what} joined by spaces (emotion_input)",
                                   "input_turns": input_turns})


def _goemotions_config(labels: list[str]) -> ClassifierConfig:
    return ClassifierConfig(kind="goemotions", labels=labels, multi_label=True, input="text", max_seq_length=128,
                            threshold=0.3)


def _epitome_config(dim: str) -> ClassifierConfig:
    return ClassifierConfig(kind=f"epitome-{dim}", labels=["0", "1", "2"], input="pair", max_seq_length=64,
                            lowercase=True, extra={"dimension": dim, "levels": {"0": "no", "1": "weak", "2": "strong"}})


def _intent_config() -> ClassifierConfig:
    from empathkit.classifiers.data import INTENT_LABELS

    return ClassifierConfig(kind="intent", labels=list(INTENT_LABELS), input="text", max_seq_length=128,
                            lowercase=True)


# Train-set sizes for the full (non-quick) run: chosen so that `classifiers train` (all kinds) stays near its time
# budget on a 2-core CPU; test sets are always complete. See docs/classifiers.md for the measurements.
SIZES = {
    "emotion": {"train": 12000, "valid": 1500},  # test: all 5,259 ED test listener-turn contexts
    "goemotions": {"train": 5000, "valid": 1000, "test": 2500},
    "intent": {"cap_per_class": 500, "valid": 1000, "test": 2500},
}


def _limit(splits: dict, info: dict, sizes: dict, seed: int) -> None:
    from empathkit.classifiers.data import subsample

    for split in ("train", "valid", "test"):
        n = sizes.get(split)
        if n is not None and n < len(splits[split][0]):
            info.setdefault("full_sizes", {})[split] = len(splits[split][0])
            splits[split] = subsample(*splits[split], n, seed)
            info["sizes"][split] = n


def _plan(kind: str, quick: bool, seed: int, root, method: str = "linear", input_turns: int | None = None,
          sizes: dict | None = None) -> tuple[ClassifierConfig, dict, dict, dict]:
    """(config, splits, info, training options) for one kind. Train sizes are capped to fit the time budget
    (fine-tuning caps its training set itself: ``train_limit``); ``sizes`` (``{split: n}``) replaces those caps.
    ``input_turns`` (emotion only): train on the last N context turns instead of the whole context."""
    from empathkit.classifiers import data as D

    sizes = dict(sizes) if sizes is not None else {} if quick else dict(SIZES.get(kind, {}))
    if method == "finetune":
        sizes.pop("train", None)
    if kind == "emotion":
        splits, info = D.load_emotion(root, quick=quick, seed=seed, max_turns=input_turns)
        _limit(splits, info, sizes, seed)
        return _emotion_config(input_turns), splits, info, {"select_on": "accuracy"}
    if kind == "goemotions":
        splits, info = D.load_goemotions(root, quick=quick, seed=seed)
        _limit(splits, info, sizes, seed)
        return _goemotions_config(info["labels"]), splits, info, {"select_on": "macro_f1"}
    if kind.startswith("epitome-"):
        dim = kind.split("-", 1)[1]
        splits, info = D.load_epitome(dim, root, quick=quick, seed=seed)
        return _epitome_config(dim), splits, info, {"select_on": "macro_f1"}
    if kind == "intent":
        splits, info = D.load_intent(root, quick=quick, seed=seed, cap=sizes.get("cap_per_class"))
        _limit(splits, info, sizes, seed)
        return _intent_config(), splits, info, {"select_on": "macro_f1"}
    raise ConfigError(f"unknown classifier kind {kind!r}")


def train_kind(kind: str, quick: bool = False, seed: int = 0, out_dir: str | Path | None = None, root=None,
               method: str = "linear", extra_eval: Callable | None = None, input_turns: int | None = None,
               members: int = 1, sizes: dict | None = None, linear_options: dict | None = None,
               variant: str | None = None, use_store: bool = True, **finetune_opts) -> dict[str, Any]:
    """Train one kind and write it to ``out_dir`` (default: its cache folder). Returns the metrics dict.
    ``members`` > 1 (finetune only): a seed ensemble (seeds ``seed … seed+members-1``, mean probability).
    ``sizes``: ``{split: n}`` seeded subset sizes instead of :data:`SIZES`; ``linear_options``: ``c_grid`` /
    ``class_weights`` of the linear head; ``variant``: recorded in ``metrics.json`` (the quick demo classifier:
    ``"demo-quick"``); ``use_store``: read / write the on-disk embedding store (linear and mlp)."""
    from empathkit.classifiers import KINDS, classifier_dir
    from empathkit.runs import library_versions, save_run_meta, set_seed

    if kind not in KINDS:
        raise ConfigError(f"unknown classifier kind {kind!r}; known: {', '.join(KINDS)}")
    if input_turns is not None and (kind != "emotion" or input_turns < 1):
        raise ConfigError(f"input_turns applies to the emotion classifier only and must be ≥ 1 (got {input_turns} "
                          f"for {kind!r})")
    if members < 1 or (members > 1 and method != "finetune"):
        raise ConfigError(f"members must be ≥ 1, and > 1 only with method finetune (got {members}, {method!r})")
    set_seed(seed)
    final = Path(out_dir) if out_dir else classifier_dir(kind)
    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0, c0 = time.time(), time.process_time()
    config, splits, info, opts = _plan(kind, quick, seed, root, method, input_turns, sizes)
    if method == "finetune":
        from empathkit.classifiers.finetune import train_finetuned

        if members > 1:
            from empathkit.classifiers.finetune import train_finetuned_ensemble

            result = train_finetuned_ensemble(config, splits, tmp, members, seed=seed, **finetune_opts)
        else:
            result = train_finetuned(config, splits, tmp, seed=seed, **finetune_opts)
    elif method in ("linear", "mlp"):
        result = train_linear(kind, config, splits, info, tmp, seed, select_on=opts["select_on"], head=method,
                              use_store=use_store, **(linear_options or {}))
    else:
        raise ConfigError(f"unknown training method {method!r} (linear, mlp or finetune)")
    if extra_eval is not None:
        result["extra_eval"] = extra_eval(TextClassifier.load(tmp))
    result.update({"kind": kind, "data": info, "seed": seed, "quick": quick, "variant": variant,
                   "train_seconds": round(time.time() - t0, 1),
                   "cpu_seconds": round(time.process_time() - c0, 1),
                   "versions": library_versions(), "labels": config.labels})
    (tmp / "metrics.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    save_run_meta(tmp, {"kind": kind, "method": method, "quick": quick, "variant": variant, "sizes": sizes,
                        "linear_options": linear_options, "input_turns": input_turns, "members": members,
                        **{k: v for k, v in finetune_opts.items()}}, seed)
    from empathkit.classifiers.card import write_card

    write_card(tmp, result)
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    log.info("%s: %s in %.0fs → %s", kind, result["test"], result["train_seconds"], final)
    return result
