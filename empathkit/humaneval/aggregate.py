"""Aggregate filled annotation sheets: win / tie / lose, Likert means, Fleiss' kappa.

- A/B: for every item and aspect, each annotator's A / B / tie is mapped back to systems with the key; the item's
  outcome is the majority vote of its annotators (no strict majority → tie). Per system pair and aspect we report
  win / tie / lose counts and percentages (from the first system's side), and a two-sided sign test
  (``scipy.stats.binomtest``) of wins against losses.
- Likert: mean ± SD of the 1–5 ratings per system and aspect (all annotators pooled).
- Agreement: Fleiss' kappa per aspect (``statsmodels.stats.inter_rater.fleiss_kappa``) over the items rated by the
  same number of annotators (the most common number; other items are left out of kappa and counted). Categories:
  A / B / tie, or the five Likert points treated as nominal.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from empathkit.errors import DataError


def fleiss_kappa(table: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa of an items × categories count table (every row sums to the same number of raters)."""
    import numpy as np
    from statsmodels.stats.inter_rater import fleiss_kappa as _fk

    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError("need a non-empty items × categories table")
    sums = t.sum(1)
    if not np.all(sums == sums[0]):
        raise ValueError("every item must be rated by the same number of raters")
    return float(_fk(t, method="fleiss"))


def read_sheet(path: str | Path, aspects: Sequence[str], mode: str) -> dict[str, dict[str, str]]:
    """item → aspect → answer, validated (names file, line and column on errors). Empty answers are left out."""
    p = Path(path)
    valid = {"a": "A", "b": "B", "tie": "tie", "t": "tie", "=": "tie"} if mode == "ab" else None
    out: dict[str, dict[str, str]] = {}
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "item" not in reader.fieldnames:
            raise DataError("no 'item' column in the header", file=str(p), line=1, field="item")
        for a in aspects:
            if a not in reader.fieldnames:
                raise DataError(f"missing aspect column {a!r}", file=str(p), line=1, field=a)
        for row in reader:
            line = reader.line_num
            item = (row.get("item") or "").strip()
            if not item:
                raise DataError("empty item id", file=str(p), line=line, field="item")
            if item in out:
                raise DataError(f"item {item} appears twice", file=str(p), line=line, field="item")
            ans = {}
            for a in aspects:
                v = (row.get(a) or "").strip()
                if not v:
                    continue
                if mode == "ab":
                    if v.lower() not in valid:  # type: ignore[operator]
                        raise DataError(f"answer {v!r} must be A, B or tie", file=str(p), line=line, field=a)
                    ans[a] = valid[v.lower()]  # type: ignore[index]
                else:
                    if v not in {"1", "2", "3", "4", "5"}:
                        raise DataError(f"rating {v!r} must be an integer from 1 to 5", file=str(p), line=line, field=a)
                    ans[a] = v
            out[item] = ans
    return out


def _kappa_for(answers: dict[str, list[str]], categories: list[str]) -> dict[str, Any]:
    counts = Counter(len(v) for v in answers.values() if len(v) >= 2)
    if not counts:
        return {"kappa": None, "items": 0, "raters": 0, "left_out": len(answers)}
    raters = counts.most_common(1)[0][0]
    rows = [[v.count(c) for c in categories] for v in answers.values() if len(v) == raters]
    try:
        k = fleiss_kappa(rows)
    except (ValueError, ZeroDivisionError):
        k = None
    if k is not None and k != k:  # NaN: all raters used one category on every item
        k = None
    return {"kappa": k, "items": len(rows), "raters": raters, "left_out": len(answers) - len(rows)}


def aggregate(sheets: Sequence[str | Path], key: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Read the filled sheets and the key; returns (and optionally writes ``out``.json/.md) the results."""
    from scipy.stats import binomtest

    kp = Path(key)
    k = json.loads(kp.read_text(encoding="utf-8"))
    meta, items = k["meta"], k["items"]
    aspects, mode = meta["aspects"], meta["mode"]
    filled = [(Path(s), read_sheet(s, aspects, mode)) for s in sheets]
    if not filled:
        raise DataError("no filled sheets given")
    for path, ans in filled:
        unknown = [i for i in ans if i not in items]
        if unknown:
            raise DataError(f"item {unknown[0]} is not in the key {kp} (sheet from another export?)", file=str(path))
    result: dict[str, Any] = {"mode": mode, "aspects": aspects, "annotators": len(filled), "by_aspect": {}}
    for asp in aspects:
        per_item: dict[str, list[str]] = {}
        for _, ans in filled:
            for item, a in ans.items():
                if asp in a:
                    per_item.setdefault(item, []).append(a[asp])
        if mode == "ab":
            table: dict[str, dict[str, int]] = {}
            for item, votes in per_item.items():
                kk = items[item]
                pair = tuple(sorted((kk["A"], kk["B"]), key=meta["systems"].index))
                as_sys = [kk["A"] if v == "A" else kk["B"] if v == "B" else "tie" for v in votes]
                top, c = Counter(as_sys).most_common(1)[0]
                outcome = top if c * 2 > len(as_sys) else "tie"
                t = table.setdefault(f"{pair[0]} vs {pair[1]}", {"win": 0, "tie": 0, "lose": 0})
                t["win" if outcome == pair[0] else "lose" if outcome == pair[1] else "tie"] += 1
            for name, t in table.items():
                n = sum(t.values())
                t.update({f"{x}_pct": 100.0 * t[x] / n for x in ("win", "tie", "lose")})
                decided = t["win"] + t["lose"]
                t["sign_test_p"] = float(binomtest(t["win"], decided).pvalue) if decided else 1.0
            kappa = _kappa_for(per_item, ["A", "B", "tie"])
            result["by_aspect"][asp] = {"pairs": table, "fleiss_kappa": kappa}
        else:
            import statistics

            ratings: dict[str, list[int]] = {}
            for item, votes in per_item.items():
                ratings.setdefault(items[item]["system"], []).extend(int(v) for v in votes)
            stats = {s: {"mean": statistics.fmean(v), "sd": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v)}
                     for s, v in ratings.items()}
            result["by_aspect"][asp] = {"systems": stats,
                                        "fleiss_kappa": _kappa_for(per_item, ["1", "2", "3", "4", "5"])}
    if out is not None:
        o = Path(out)
        o.parent.mkdir(parents=True, exist_ok=True)
        o.with_suffix(".json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        o.with_suffix(".md").write_text(to_markdown(result), encoding="utf-8")
    return result


def to_markdown(result: dict[str, Any]) -> str:
    from empathkit.reports.tables import markdown_table

    lines = [f"# Human evaluation ({result['mode']}, {result['annotators']} annotator sheet(s))", ""]
    for asp, r in result["by_aspect"].items():
        kap = r["fleiss_kappa"]
        ks = f"{kap['kappa']:.3f} ({kap['items']} items × {kap['raters']} raters)" if kap["kappa"] is not None else "n/a"
        lines += [f"## {asp} — Fleiss' κ = {ks}", ""]
        if result["mode"] == "ab":
            lines.append(markdown_table(
                ["pair", "win %", "tie %", "lose %", "n", "sign-test p"],
                [[name, f"{t['win_pct']:.1f}", f"{t['tie_pct']:.1f}", f"{t['lose_pct']:.1f}",
                  t["win"] + t["tie"] + t["lose"], f"{t['sign_test_p']:.3g}"] for name, t in r["pairs"].items()]))
        else:
            lines.append(markdown_table(["system", "mean", "SD", "ratings"],
                                        [[s, f"{v['mean']:.2f}", f"{v['sd']:.2f}", v["n"]]
                                         for s, v in r["systems"].items()]))
        lines.append("")
    return "\n".join(lines)
