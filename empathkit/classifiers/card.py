"""Model card (``card.md``) written next to each trained classifier from its ``metrics.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_PURPOSE = {
    "emotion": "32-way EmpatheticDialogues emotion of a dialogue context (serving; Acc_emo baselines; EC option).",
    "goemotions": "GoEmotions multi-label emotions of a text (EA-F1 and EC, in place of SamLowe/roberta-base-go-emotions).",
    "epitome-er": "EPITOME emotional-reactions level of a response to a seeker post (Emp-F1, DIFF-EPITOME).",
    "epitome-ip": "EPITOME interpretations level of a response to a seeker post (Emp-F1, DIFF-EPITOME).",
    "epitome-ex": "EPITOME explorations level of a response to a seeker post (Emp-F1, DIFF-EPITOME).",
    "intent": "EmpatheticIntents listener intent (Acc_intent).",
}


def _fmt(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items())


def write_card(folder: str | Path, m: dict[str, Any]) -> Path:
    kind = m["kind"]
    data = m.get("data", {})
    lines = [
        f"# empathkit classifier: {kind}",
        "",
        f"**Purpose:** {_PURPOSE.get(kind, '')}",
        "",
        f"- Method: {m.get('method')} (encoder: sentence-transformers all-MiniLM-L6-v2, the embedded `minilm-l6`)",
        f"- Labels ({len(m.get('labels', []))}): {', '.join(m.get('labels', []))}",
        f"- Data: {data.get('source', '')}" + (f" — input: {data['input']}" if data.get("input") else ""),
        f"- Split sizes: {data.get('sizes')}" + (" (quick subset)" if m.get("quick") else ""),
    ]
    if data.get("split"):
        lines.append(f"- Split: {data['split']}")
    if data.get("train_subset"):
        lines.append(f"- Train subset: {data['train_subset']}")
    if data.get("cap_per_class"):
        lines.append(f"- Train capped at {data['cap_per_class']} examples per class")
    sel = m.get("selection") or {}
    if sel:
        lines.append(f"- Hyper-parameters: C={sel.get('C')}, class_weight={sel.get('class_weight')} "
                     f"(selected on {sel.get('selected_on')})")
    if m.get("hyperparameters"):
        lines.append(f"- Hyper-parameters: {m['hyperparameters']}")
    lines += [
        f"- **Held-out test scores:** {_fmt(m.get('test', {}))}",
    ]
    for mem in m.get("members") or []:
        lines.append(f"- Member (seed {mem['seed']}): test {_fmt(mem.get('test', {}))}; valid "
                     f"{_fmt(mem.get('valid', {}))}; {mem.get('finetune_seconds')} s of fine-tuning")
    if m.get("extra_eval"):
        for name, vals in m["extra_eval"].items():
            lines.append(f"- Extra evaluation — {name}: {_fmt(vals) if isinstance(vals, dict) else vals}")
    v = m.get("versions", {})
    lines += [
        f"- Training time: {m.get('train_seconds')} s wall, {m.get('cpu_seconds')} s CPU on this machine, 2 shared "
        f"cores ({_time_split(m)}seed {m.get('seed')})",
        f"- Versions: torch {v.get('torch')}, transformers {v.get('transformers')}, sentence-transformers "
        f"{v.get('sentence-transformers')}, scikit-learn {v.get('scikit-learn')}, git {v.get('git_commit', '')[:10]}",
        "",
        ("Weights: one sub-folder per member (`ensemble.json` lists them; each holds `head.safetensors` and its "
         "fine-tuned encoder in `encoder/`). " if m.get("members") else
         "Weights: `head.safetensors` (linear head" + (", plus the fine-tuned encoder in `encoder/`" if
                                                      m.get("method", "").startswith("finetune") else
                                                      " over frozen MiniLM mean-pooled embeddings") + "). ") +
        "Never pickled. Data licences: see the SOURCE.md of the data folder (non-commercial research use).",
        "",
    ]
    p = Path(folder) / "card.md"
    p.write_text("\n".join(lines), encoding="utf-8")
    return p


def _time_split(m: dict) -> str:
    """Where the training time went: the embedding pass (frozen methods) or fine-tuning."""
    if m.get("embed_seconds") is not None:
        return f"embedding {m['embed_seconds']} s; "
    if m.get("finetune_seconds") is not None:
        return f"fine-tuning {m['finetune_seconds']} s; "
    return ""
