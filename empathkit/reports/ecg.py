"""ECG-LoRA analyses (the paper's Figures 2–6) from run directories, with matplotlib.

- :func:`plot_gate_distribution` (Fig. 3): boxplot of the gate per emotion — the distribution over the logged
  training steps of the second half of training (with ``encoder_dropout`` = 0 an emotion's gate is one number at a
  given step, so the spread shown is its movement late in training).
- :func:`plot_gate_dynamics` (Fig. 4): mean gate per emotion group (negative-high / positive-high / subtle, and
  positive / negative) against the training step.
- :func:`causal_control` + :func:`plot_causal_control` (Fig. 5): a metric against a gate forced on every example.
  Metrics: any registered metric over generations (the paper uses EC), and the always-available proxy
  ``ref-loglik`` — the mean per-token log-likelihood of the human reference response under the forced gate.
- :func:`plot_grad_allocation` (Fig. 6): mean per-example LoRA gradient norm per emotion, one series per run
  (standard LoRA needs ``train.log_emotion_grads=true``).
- :func:`plot_strategy_shift` (Fig. 2): bars of empathy-strategy scores (EPITOME ER / IP / EX, or Emp-F1
  dimensions) per run, when a run's ``scores.json`` has them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from empathkit.data.emotions import EMOTIONS, gradient_group

GROUP_COLORS = {"negative-high": "#c0392b", "positive-high": "#e67e22", "subtle": "#2980b9",
                "positive": "#27ae60", "negative": "#8e44ad"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_log(run_dir: str | Path) -> list[dict]:
    """The rows of a run's ``log.jsonl`` (none when the run has no log)."""
    from empathkit.runs import read_jsonl

    p = Path(run_dir) / "log.jsonl"
    return read_jsonl(p) if p.is_file() else []


def gate_rows(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r.get("kind") == "gate" and r.get("gate")]


# ---------------------------------------------------------------------------------------------------- Fig. 3
def gate_distribution(rows: Sequence[dict], final: dict[str, float] | None = None, late_fraction: float = 0.5
                      ) -> dict[str, list[float]]:
    g = gate_rows(rows)
    late = g[int(len(g) * (1 - late_fraction)):] if g else []
    out = {e: [r["gate"][e] for r in late if e in r["gate"]] for e in EMOTIONS}
    if final:
        for e, v in final.items():
            out.setdefault(e, []).append(v)
    return {e: v for e, v in out.items() if v}


def plot_gate_distribution(dist: dict[str, list[float]], out: str | Path, title: str = "") -> Path:
    plt = _plt()
    order = sorted(dist, key=lambda e: sorted(dist[e])[len(dist[e]) // 2], reverse=True)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    bp = ax.boxplot([dist[e] for e in order], patch_artist=True, widths=0.6)
    for patch, e in zip(bp["boxes"], order):
        patch.set_facecolor(GROUP_COLORS[gradient_group(e)])
        patch.set_alpha(0.6)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=70, fontsize=8)
    ax.set_ylabel("gate G_emo")
    ax.set_title(title or "Gate distribution per emotion (late training steps)")
    _group_legend(ax, ("negative-high", "positive-high", "subtle"))
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------------- Fig. 4
def gate_dynamics(rows: Sequence[dict]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for r in gate_rows(rows):
        for grp, v in r.get("gate_group", {}).items():
            series.setdefault(grp, []).append((r["step"], v))
    return series


def plot_gate_dynamics(series: dict[str, list[tuple[int, float]]], out: str | Path, title: str = "") -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for grp, pts in sorted(series.items()):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=grp, color=GROUP_COLORS.get(grp),
                linestyle="-" if grp in ("negative-high", "positive-high", "subtle") else ":")
    ax.set_xlabel("training step")
    ax.set_ylabel("mean gate of the group")
    ax.set_title(title or "Gate learning dynamics by emotion group")
    ax.legend(fontsize=8)
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------------- Fig. 5
def reference_loglik(gen, examples, gate: float, max_length: int = 128, batch_size: int = 8) -> float:
    """Mean per-token log-likelihood of the reference listener turns with every gate forced to ``gate``."""
    from empathkit.types import Controls

    scores = gen.score(examples, [Controls(gate=float(gate))] * len(examples), batch_size=batch_size,
                       max_length=max_length)
    return -sum(s.nll for s in scores) / max(sum(s.tokens for s in scores), 1)


def causal_control(gen, examples, gates: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                   metrics: Sequence[str] = (), settings=None, progress: bool = False) -> dict[str, Any]:
    """Force every example's gate to each value; score ``ref-loglik`` and each registered metric in ``metrics``
    over the generations. Returns ``{"gates": [...], "scores": {column: [...]}, "skipped": {metric: reason}}``."""
    from empathkit.errors import EmpathkitError
    from empathkit.types import Controls

    scores: dict[str, list[float]] = {"ref-loglik": []}
    skipped: dict[str, str] = {}
    todo = list(metrics)
    for g in gates:
        scores["ref-loglik"].append(reference_loglik(gen, examples, g))
        if not todo:
            continue
        preds = gen.generate(examples, settings, [Controls(gate=float(g))] * len(examples), progress=progress)
        for m in list(todo):
            try:
                from empathkit.evaluation import score

                for k, v in score(preds, metrics=[m], progress=False).items():
                    scores.setdefault(k, []).append(float(v))
            except (EmpathkitError, ImportError, KeyError) as e:
                skipped[m] = str(e).splitlines()[0]
                todo.remove(m)
    scores = {k: v for k, v in scores.items() if len(v) == len(gates)}
    return {"gates": list(gates), "scores": scores, "skipped": skipped, "n_examples": len(examples)}


def plot_causal_control(result: dict[str, Any], out: str | Path, title: str = "") -> Path:
    plt = _plt()
    keys = list(result["scores"])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(result["gates"], result["scores"][k], marker="o")
        ax.set_xlabel("forced gate G")
        ax.set_ylabel(k)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"Causal control: metric vs forced gate ({result['n_examples']} examples)")
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------------- Fig. 6
def grad_allocation(rows: Sequence[dict]) -> dict[str, float]:
    """Mean LoRA gradient norm per emotion over all logged diagnostic steps (weighted by example counts)."""
    tot: dict[str, float] = {}
    cnt: dict[str, int] = {}
    for r in rows:
        if r.get("kind") != "grad":
            continue
        for e, v in r.get("grad_norm_emotion", {}).items():
            c = r.get("grad_count_emotion", {}).get(e, 1)
            tot[e] = tot.get(e, 0.0) + v * c
            cnt[e] = cnt.get(e, 0) + c
    return {e: tot[e] / cnt[e] for e in tot if e in EMOTIONS}


def plot_grad_allocation(by_run: dict[str, dict[str, float]], out: str | Path, title: str = "") -> Path:
    plt = _plt()
    emos = [e for e in EMOTIONS if any(e in v for v in by_run.values())]
    ref = next(iter(by_run.values()))
    emos.sort(key=lambda e: ref.get(e, 0.0), reverse=True)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    w = 0.8 / max(1, len(by_run))
    for k, (name, vals) in enumerate(by_run.items()):
        ax.bar([i + k * w for i in range(len(emos))], [vals.get(e, math.nan) for e in emos], width=w, label=name)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(emos))], emos, rotation=70, fontsize=8)
    ax.set_ylabel("mean per-example LoRA grad norm")
    ax.set_title(title or "Gradient allocation per emotion")
    ax.legend()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------------- Fig. 2
STRATEGY_KEYS = ("epitome-er", "epitome-ip", "epitome-ex", "emp-f1-emo", "emp-f1-exp", "emp-f1-int")


def strategy_scores(scores: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in scores.items()
            if isinstance(v, (int, float)) and any(s in k.lower() for s in ("epitome", "emp-f1", "er", "ip", "ex"))
            and any(k.lower().startswith(p) for p in ("epitome", "emp-f1", "diff-epitome"))}


def plot_strategy_shift(by_run: dict[str, dict[str, float]], out: str | Path, title: str = "") -> Path:
    plt = _plt()
    keys = sorted({k for v in by_run.values() for k in v})
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(keys)), 4))
    w = 0.8 / max(1, len(by_run))
    for j, (name, vals) in enumerate(by_run.items()):
        ax.bar([i + j * w for i in range(len(keys))], [vals.get(k, math.nan) for k in keys], width=w, label=name)
    ax.set_xticks([i + 0.4 - w / 2 for i in range(len(keys))], keys, rotation=30, fontsize=8)
    ax.set_title(title or "Empathy strategy shift")
    ax.legend()
    return _save(fig, out)


# ----------------------------------------------------------------------------------------------------
def _group_legend(ax, groups) -> None:
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=GROUP_COLORS[g], alpha=0.6, label=g) for g in groups], fontsize=8)


def _save(fig, out: str | Path) -> Path:
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(p, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return p
