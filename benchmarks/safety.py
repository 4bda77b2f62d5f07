"""The crisis safety layer: recall on the project's crisis set, false-positive rate on every ED test conversation,
per category and per language, and checks per second; chooses the semantic threshold on ED *valid*.

- **Crisis set** (``tests/serving/crisis_set.jsonl``, written for this project; rows are one message or a
  conversation of user turns): recall and false-positive rate overall, per category and per language.
- **ED test** (read from the data root at run time, never copied; only counts and conversation ids are written):
  the 2,547 contexts of the ``last-listener`` protocol (every turn before the last listener turn), checked as a
  conversation (``SafetyLayer.check_messages``: the recent user turns). None of them is a crisis message: sadness,
  grief, anger, fear… must not trigger. False-positive rate overall and per ED emotion label.
- **Semantic threshold**: the similarity of each ED *valid* context's recent user turns to the written crisis
  intents; the threshold is the smallest value (to 0.01) at which at most ``--valid-fpr`` of those contexts would be
  flagged. It is then applied unchanged to the crisis set and ED test.
- **Speed**: checks per second over the ED test contexts, rules alone and rules + semantic.

    python benchmarks/safety.py [--valid-fpr 0.002] [--limit N] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402
from empathkit.reports.tables import markdown_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SET = REPO / "tests/serving/crisis_set.jsonl"


def conversation(ex) -> list[dict[str, str]]:
    return [{"role": "user" if t.role == "speaker" else "assistant", "content": t.text} for t in ex.context]


def set_rows() -> list[dict]:
    return [json.loads(x) for x in SET.read_text(encoding="utf-8").splitlines() if x.strip()]


def set_messages(r: dict) -> list[dict[str, str]]:
    return [{"role": "user", "content": t} for t in r.get("turns", [r["text"]])]


def rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def crisis_set_metrics(layer, rows) -> dict:
    res = [layer.check_messages(set_messages(r)) for r in rows]
    out: dict = {"by_category": {}, "by_language": {}}
    pos = [(r, x) for r, x in zip(rows, res) if r["crisis"]]
    neg = [(r, x) for r, x in zip(rows, res) if not r["crisis"]]
    out["n_crisis"], out["n_ordinary"] = len(pos), len(neg)
    out["recall"], out["fpr"] = rate([x.flagged for _, x in pos]), rate([x.flagged for _, x in neg])
    for cat in sorted({r["category"] for r, _ in pos}):
        xs = [x for r, x in pos if r["category"] == cat]
        out["by_category"][cat] = {"n": len(xs), "recall": rate([x.flagged for x in xs])}
    for lang in sorted({r["lang"] for r in rows}):
        p = [x for r, x in pos if r["lang"] == lang]
        n = [x for r, x in neg if r["lang"] == lang]
        out["by_language"][lang] = {"n_crisis": len(p), "recall": rate([x.flagged for x in p]), "n_ordinary": len(n),
                                    "fpr": rate([x.flagged for x in n])}
    out["missed"] = [r["text"] for r, x in pos if not x.flagged]  # written texts (ours): fine to report
    out["false_alarms"] = [r["text"] for r, x in neg if x.flagged]
    out["sources"] = {s: sum(x.source == s for _, x in pos if x.flagged) for s in ("rules", "semantic")}
    return out


def ed_metrics(layer, examples) -> dict:
    t0 = time.perf_counter()
    res = [layer.check_messages(conversation(ex)) for ex in examples]
    dt = time.perf_counter() - t0
    by: dict[str, list[bool]] = {}
    for ex, r in zip(examples, res):
        by.setdefault(ex.emotion, []).append(r.flagged)
    flagged = [(ex, r) for ex, r in zip(examples, res) if r.flagged]
    return {"n": len(examples), "fpr": rate([r.flagged for r in res]), "flagged": len(flagged),
            "checks_per_s": len(examples) / dt,
            "by_emotion": {e: {"n": len(v), "flagged": sum(v), "fpr": rate(v)} for e, v in sorted(by.items())},
            # ids and the rule that fired only: dataset text never goes into the results
            "flagged_ids": [[ex.id, r.source, r.rule, r.category] for ex, r in flagged]}


def recent_user_turns(ex, k: int = 3) -> list[str]:
    return [t.text for t in ex.context if t.role == "speaker"][-k:]


def choose_threshold(matcher, valid, target_fpr: float) -> tuple[float, dict]:
    turns = [recent_user_turns(ex) for ex in valid]
    flat = [t for ts in turns for t in ts]
    scores = [s for s, _ in matcher.scores(flat)]
    it = iter(scores)
    best = sorted(max(next(it) for _ in ts) if ts else 0.0 for ts in turns)
    k = max(0, len(best) - 1 - int(math.floor(target_fpr * len(best))))
    thr = math.ceil(best[k] * 100 + 1e-9) / 100
    return thr, {"valid_contexts": len(best), "target_fpr": target_fpr, "max_similarity": best[-1],
                 "p99_similarity": best[int(0.99 * (len(best) - 1))], "median_similarity": best[len(best) // 2]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--valid-fpr", type=float, default=0.002)
    ap.add_argument("--limit", type=int, default=None, help="ED contexts per split (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: far faster on a shared CPU)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)

    from empathkit.data import load_examples
    from empathkit.serving.crisis import SemanticMatcher
    from empathkit.serving.safety import SafetyConfig, SafetyLayer

    valid = load_examples("ed", "valid", "last-listener", limit=a.limit, seed=0)
    test = load_examples("ed", "test", "last-listener", limit=a.limit, seed=0)
    rows = set_rows()
    matcher = SemanticMatcher()
    t0 = time.perf_counter()
    threshold, calib = choose_threshold(matcher, valid, a.valid_fpr)
    print("threshold", threshold, calib, f"{time.perf_counter() - t0:.0f} s", flush=True)
    matcher.threshold = threshold
    rules = SafetyLayer()
    both = SafetyLayer(SafetyConfig(semantic=True, semantic_threshold=threshold), semantic=matcher)
    out = {"semantic_threshold": threshold, "calibration": calib, "layers": {}}
    for name, layer in (("rules", rules), ("rules+semantic", both)):
        out["layers"][name] = {"crisis_set": crisis_set_metrics(layer, rows), "ed_test": ed_metrics(layer, test)}
        cs, ed = out["layers"][name]["crisis_set"], out["layers"][name]["ed_test"]
        print(name, f"recall {cs['recall']:.3f} set-fpr {cs['fpr']:.3f} ed-fpr {ed['fpr']:.4f} "
              f"{ed['checks_per_s']:.0f}/s", flush=True)

    table = []
    for name, lv in out["layers"].items():
        cs, ed = lv["crisis_set"], lv["ed_test"]
        table.append({"layer": name, "crisis-set recall": f"{cs['recall']:.3f} ({cs['n_crisis']})",
                      "crisis-set FPR": f"{cs['fpr']:.3f} ({cs['n_ordinary']})",
                      "ED test FPR": f"{ed['fpr']:.4f} ({ed['flagged']}/{ed['n']})",
                      "checks/s (ED contexts)": f"{ed['checks_per_s']:.0f}"})
    notes = [
        f"Semantic threshold **{threshold:.2f}** (cosine to the written intents, MiniLM-L6), chosen on ED valid: the "
        f"smallest value flagging at most {a.valid_fpr:.1%} of its {calib['valid_contexts']} contexts (their highest "
        f"similarity {calib['max_similarity']:.3f}, 99th percentile {calib['p99_similarity']:.3f}, median "
        f"{calib['median_similarity']:.3f}). It is the default `SafetyConfig.semantic_threshold`.",
        "The crisis set was written by the people who wrote the rules (including the obfuscated and non-English "
        "rows added with them), so its recall is an optimistic estimate; ED test is data nobody wrote for this test.",
        "ED contexts are checked as conversations: the recent user turns (3, newest first), one conversation per call "
        f"(as the server does), torch threads {a.threads}.",
    ]
    md = write_results("safety", out, table, "Crisis safety layer: recall and false alarms", notes)
    extra = []
    for name, lv in out["layers"].items():
        cs, ed = lv["crisis_set"], lv["ed_test"]
        extra.append(f"\n## {name}\n")
        extra.append(markdown_table(["category", "n", "recall"], [[k, v["n"], f"{v['recall']:.2f}"]
                                                                   for k, v in cs["by_category"].items()]))
        extra.append("")
        extra.append(markdown_table(["language", "crisis n", "recall", "ordinary n", "FPR"],
                                    [[k, v["n_crisis"], f"{v['recall']:.2f}", v["n_ordinary"], f"{v['fpr']:.2f}"]
                                     for k, v in cs["by_language"].items()]))
        extra.append("")
        extra.append(markdown_table(["ED emotion (test)", "contexts", "flagged", "FPR"],
                                    [[k, v["n"], v["flagged"], f"{v['fpr']:.3f}"] for k, v in ed["by_emotion"].items()]))
        extra.append(f"\nMissed on the crisis set: {cs['missed'] or 'none'}; false alarms: {cs['false_alarms'] or 'none'}."
                     f" ED test flags by rule: {_by_rule(ed['flagged_ids'])}.")
    md.write_text(md.read_text() + "\n".join(extra) + "\n")
    print(md.read_text())


def _by_rule(flagged: list) -> str:
    counts: dict[str, int] = {}
    for _, source, rule, _cat in flagged:
        counts[f"{source}:{rule}"] = counts.get(f"{source}:{rule}", 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


if __name__ == "__main__":
    main()
