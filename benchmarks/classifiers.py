"""Held-out scores and training times of the auxiliary classifiers (from their cached metrics.json), plus an
inference-speed probe of the shared predict API.

    python benchmarks/classifiers.py            # report what `empathkit classifiers train` produced
    python benchmarks/classifiers.py --train    # (re)train every kind first, sequentially, and report
    python benchmarks/classifiers.py --speed 256 # also time predict() on N ED test responses per classifier

Writes benchmarks/results/classifiers.{json,md}. Training times are wall-clock on this machine while other jobs
shared its 2 cores, so CPU seconds (process time, both threads) are reported too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from empathkit.classifiers import KINDS, _LOADED, is_trained, load_classifier, read_metrics  # noqa: E402


def speed(kind: str, n: int) -> float:
    """Responses per second of predict() on ``n`` ED test listener turns (fresh embeddings, memo cleared)."""
    from empathkit.data import load_examples

    exs = load_examples("ed", "test", "every-listener", limit=n, seed=1)
    clf = load_classifier(kind)
    for member in getattr(clf, "members", [clf]):  # an ensemble: every member's memo
        member.encoder.memo.clear()
    inputs = [(e.last_user_turn, e.target) for e in exs] if KINDS.get(kind).input == "pair" else [e.target for e in exs]
    t0 = time.perf_counter()
    clf.predict(inputs)
    return len(exs) / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", action="store_true", help="train every kind first (takes a while)")
    ap.add_argument("--speed", type=int, default=0, help="time predict() on N ED test responses per kind")
    args = ap.parse_args()
    if args.train:  # the command users run, with its per-kind defaults (fine-tuned emotion ensemble, …)
        import subprocess

        subprocess.run([sys.executable, "-c", "from empathkit.cli.main import main; main()", "classifiers", "train"],
                       check=True)
    rows, payload = [], {"classifiers": {}}
    total_wall = total_cpu = 0.0
    for k in KINDS.names():
        m = read_metrics(k) if is_trained(k) else None
        if m is None:
            rows.append({"kind": k, "status": "not trained"})
            continue
        t = m.get("test", {})
        row = {"kind": k, "method": m.get("method", ""), "train/valid/test": "/".join(str(m["data"]["sizes"][s])
                                                                               for s in ("train", "valid", "test")),
               "accuracy": t.get("accuracy", t.get("exact_match", float("nan"))), "macro-F1": t.get("macro_f1"),
               "weighted/micro-F1": t.get("weighted_f1", t.get("micro_f1")),
               "train s (wall)": f"{m.get('train_seconds') or 0:.0f}", "CPU s": f"{m.get('cpu_seconds') or 0:.0f}"}
        if args.speed:
            _LOADED.clear()
            row["predict /s"] = speed(k, args.speed)
        rows.append(row)
        total_wall += m.get("train_seconds") or 0
        total_cpu += m.get("cpu_seconds") or 0
        payload["classifiers"][k] = {key: m.get(key) for key in ("method", "test", "valid", "extra_eval", "data", "seed",
                                                                 "train_seconds", "cpu_seconds", "quick", "selection",
                                                                 "hyperparameters")}
        if row.get("predict /s"):
            payload["classifiers"][k]["predict_per_s"] = row["predict /s"]
    payload["total_train_seconds"] = total_wall
    payload["total_cpu_seconds"] = total_cpu
    notes = [f"Total training time: {total_wall / 60:.1f} min wall, {total_cpu / 60:.1f} min CPU (sum over kinds; "
             "wall time depends on how busy the shared 2 cores were).",
             "emotion: accuracy on all ED test listener-turn contexts (target ≥ 0.50); goemotions: multi-label at "
             "threshold 0.3 (accuracy column = exact match, last column = micro-F1); epitome-*: fixed 80/10/10 split "
             "by seeker post; intent: lexically-extended EmpatheticIntents test files.",
             "Details (data, selection, versions) in each classifier's card.md / metrics.json under "
             "cache_dir()/classifiers/<kind>/ and in docs/classifiers.md."]
    intent = read_metrics("intent") if is_trained("intent") else None
    if intent and intent.get("extra_eval"):
        for name, v in intent["extra_eval"].items():
            notes.append(f"intent — {name}: accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f} (n={v['n']:.0f})")
    emo = read_metrics("emotion") if is_trained("emotion") else None
    if emo and emo.get("valid_curve"):
        hp = emo.get("hyperparameters", {})
        notes.append("emotion fine-tuning (lr %s, head lr %s, batch %s, seq %s, %s examples seen): valid accuracy on a "
                     "1,000-example subset every 200 steps (first member): %s; valid (selection subset) %.3f, "
                     "test %.4f."
                     % (hp.get("lr"), hp.get("head_lr"), hp.get("batch_size"), hp.get("max_seq_length"),
                        hp.get("examples_seen"), ", ".join(f"{c['valid_accuracy']:.3f}" for c in emo["valid_curve"]),
                        emo["valid"]["accuracy"], emo["test"]["accuracy"]))
        for mem in emo.get("members") or []:
            notes.append("emotion ensemble member seed %s: valid %.4f, test %.4f (%.0f s of fine-tuning)"
                         % (mem["seed"], mem["valid"]["accuracy"], mem["test"]["accuracy"], mem["finetune_seconds"]))
    print(write_results("classifiers", payload, rows, "Auxiliary classifiers: held-out scores and training time", notes))


if __name__ == "__main__":
    main()
