"""Plots comparing systems (matplotlib, Agg backend — no display needed).

- :func:`bar_chart` — grouped bars: one group per metric key, one bar per system (mean ± SD when several seeds).
- :func:`radar_chart` — one polygon per system over several keys; each key is min–max normalised across the
  systems (0 = worst system, 1 = best; ``lower_is_better`` keys are flipped), because the keys have different scales.
- :func:`strategy_shift_chart` — ECG-LoRA Fig. 2: grouped bars of the three EPITOME strategies (emotional
  reactions, interpretations, explorations) per system, with the shift of each system against the first annotated.
  The values are per-dimension Emp-F1 (``emp-f1-er/ip/ex``) when available, otherwise the share of responses with an
  EPITOME level > 0, or any per-dimension dictionary the caller passes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from empathkit.errors import ConfigError

DIMENSIONS = {"er": "Emotional reactions", "ip": "Interpretations", "ex": "Explorations"}
PALETTE = ("#2c7fb8", "#d7301f", "#31a354", "#756bb1", "#fe9929", "#636363", "#e7298a", "#66a61e")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | Path) -> Path:
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=150)
    _plt().close(fig)
    return p


def summary_of(result_or_summary) -> dict[str, dict[str, dict[str, float]]]:
    """EvalResult / ``aggregates.json`` dict / {system: {key: value}} → {system: {key: {mean, sd}}}."""
    if hasattr(result_or_summary, "summary"):
        return result_or_summary.summary()
    if isinstance(result_or_summary, Mapping) and "summary" in result_or_summary:
        return result_or_summary["summary"]
    out = {}
    for name, keys in result_or_summary.items():
        out[name] = {k: (v if isinstance(v, Mapping) else {"mean": v, "sd": 0.0}) for k, v in keys.items()}
    return out


def _check_keys(summ, keys: Sequence[str]) -> None:
    missing = [k for k in keys if not any(k in s for s in summ.values())]
    if missing:
        have = sorted({k for s in summ.values() for k in s})
        raise ConfigError(f"no system has {', '.join(missing)}; available: {', '.join(have)}")


def bar_chart(results, keys: Sequence[str], out: str | Path, title: str = "") -> Path:
    import numpy as np

    plt = _plt()
    summ = summary_of(results)
    _check_keys(summ, keys)
    systems = list(summ)
    x = np.arange(len(keys))
    w = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(keys) + 2), 3.8))
    for j, s in enumerate(systems):
        means = [summ[s].get(k, {}).get("mean", math.nan) for k in keys]
        sds = [summ[s].get(k, {}).get("sd", 0.0) or 0.0 for k in keys]
        ax.bar(x + (j - (len(systems) - 1) / 2) * w, means, w, yerr=sds if any(sds) else None, capsize=3,
               label=s, color=PALETTE[j % len(PALETTE)])
    ax.set_xticks(x, keys, rotation=20, ha="right")
    ax.set_title(title or "Systems compared")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def radar_values(results, keys: Sequence[str], lower_is_better: Sequence[str] = ()) -> dict[str, list[float]]:
    """Per-key min–max normalisation across systems (1 = best); a key where all systems tie maps to 0.5."""
    summ = summary_of(results)
    _check_keys(summ, keys)
    out = {s: [] for s in summ}
    for k in keys:
        vals = {s: summ[s].get(k, {}).get("mean", math.nan) for s in summ}
        finite = [v for v in vals.values() if v is not None and not math.isnan(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
        for s, v in vals.items():
            if v is None or math.isnan(v):
                out[s].append(0.0)
            elif hi == lo:
                out[s].append(0.5)
            else:
                z = (v - lo) / (hi - lo)
                out[s].append(1 - z if k in lower_is_better else z)
    return out


def radar_chart(results, keys: Sequence[str], out: str | Path, lower_is_better: Sequence[str] = (),
                title: str = "") -> Path:
    import numpy as np

    if len(keys) < 3:
        raise ConfigError("a radar chart needs at least 3 metric keys (use bar_chart for fewer)")
    plt = _plt()
    vals = radar_values(results, keys, lower_is_better)
    ang = np.linspace(0, 2 * np.pi, len(keys), endpoint=False).tolist()
    fig, ax = plt.subplots(figsize=(5, 5), subplot_kw={"polar": True})
    for j, (s, v) in enumerate(vals.items()):
        ax.plot(ang + ang[:1], v + v[:1], color=PALETTE[j % len(PALETTE)], label=s)
        ax.fill(ang + ang[:1], v + v[:1], color=PALETTE[j % len(PALETTE)], alpha=0.12)
    ax.set_xticks(ang, [k + (" ↓" if k in lower_is_better else "") for k in keys], fontsize=8)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["", "", "", ""])
    ax.set_ylim(0, 1)
    ax.set_title(title or "Systems compared (min–max normalised per metric, 1 = best)", fontsize=9)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    return _save(fig, out)


def strategy_scores(results) -> dict[str, dict[str, float]]:
    """system → {er, ip, ex}: per-dimension Emp-F1 (``emp-f1-<dim>``) if present, else ``epitome-<dim>-share``."""
    summ = summary_of(results)
    out: dict[str, dict[str, float]] = {}
    for s, keys in summ.items():
        for pattern in ("emp-f1-{}", "epitome-{}-share"):
            if all(pattern.format(d) in keys for d in DIMENSIONS):
                out[s] = {d: keys[pattern.format(d)]["mean"] for d in DIMENSIONS}
                break
    if not out:
        raise ConfigError("no EPITOME strategy scores (emp-f1-er/ip/ex) in the results: run the emp-f1 metric "
                          "(needs the EPITOME classifiers) or pass {system: {er, ip, ex}} yourself")
    return out


def level_shares(levels: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """{dimension: per-response EPITOME levels} → {dimension: share of responses with level > 0}."""
    return {d: (sum(1 for x in v if x > 0) / len(v) if v else 0.0) for d, v in levels.items()}


def strategy_shift_chart(scores: Mapping[str, Mapping[str, float]] | object, out: str | Path, title: str = "",
                         ylabel: str = "Emp-F1") -> Path:
    """ECG-LoRA Fig. 2. ``scores``: {system: {er, ip, ex}} (first system = the reference for the shift labels) or an
    EvalResult / aggregates dict holding ``emp-f1-er/ip/ex``."""
    import numpy as np

    if not (isinstance(scores, Mapping) and all(isinstance(v, Mapping) and set(v) <= set(DIMENSIONS) and v
                                                  for v in scores.values())):
        scores = strategy_scores(scores)
    plt = _plt()
    systems = list(scores)
    dims = [d for d in DIMENSIONS if any(d in scores[s] for s in systems)]
    x = np.arange(len(dims))
    w = 0.8 / len(systems)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    base = scores[systems[0]]
    for j, s in enumerate(systems):
        vals = [scores[s].get(d, math.nan) for d in dims]
        bars = ax.bar(x + (j - (len(systems) - 1) / 2) * w, vals, w, label=s, color=PALETTE[j % len(PALETTE)])
        if j > 0:
            for b, d, v in zip(bars, dims, vals):
                if d in base and not math.isnan(v):
                    delta = v - base[d]
                    ax.annotate(f"{delta:+.3f}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                                va="bottom", fontsize=7, color="#2ca25f" if delta >= 0 else "#de2d26")
    ax.set_xticks(x, [DIMENSIONS[d] for d in dims])
    ax.set_ylabel(ylabel)
    ax.set_title(title or "Empathy strategy shift (EPITOME)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)
