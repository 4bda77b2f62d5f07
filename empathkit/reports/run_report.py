"""The ECG-LoRA run report (paper Figs. 2–6) over trained run directories: figures + ``report.md`` + ``report.json``.

:func:`make_report` reads each run's ``config.yaml``, ``log.jsonl`` (gate / gradient rows), ``train_summary.json``
and ``scores.json``; with ``control=True`` it also generates with forced gates for the causal-control curve
(:func:`empathkit.reports.ecg.causal_control`). ``empathkit report`` is the command-line face.
"""

from __future__ import annotations

import json
from pathlib import Path

from empathkit.errors import ConfigError, DataError
from empathkit.runs import load_run_config


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", file=str(path), line=e.lineno) from None


def make_report(run_dirs: list[Path], out: Path, control: bool = False, control_limit: int = 16,
                control_gates: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0), control_metrics: tuple[str, ...] = (),
                split: str = "test", max_new_tokens: int = 32, progress: bool = True,
                control_examples=None) -> Path:
    """Write figures + ``report.md`` (+ ``report.json``) into ``out``; returns the Markdown path."""
    from empathkit.reports import ecg

    out.mkdir(parents=True, exist_ok=True)
    md = ["# empathkit report", ""]
    data: dict = {"runs": {}}
    grads: dict[str, dict[str, float]] = {}
    strategies: dict[str, dict[str, float]] = {}
    for rd in run_dirs:
        if not (rd / "config.yaml").is_file():
            raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
        cfg = load_run_config(rd)
        label = f"{cfg.get('method')}:{rd.name}"
        rows = ecg.read_log(rd)
        summary, scores = _read_json(rd / "train_summary.json"), _read_json(rd / "scores.json")
        entry: dict = {"method": cfg.get("method"), "summary": {k: summary.get(k) for k in (
            "global_steps", "train_examples", "train_runtime_s", "train_tokens_per_s", "best_eval_loss", "train_loss")}}
        md += [f"## {label}", "", f"- method `{cfg.get('method')}`, run dir `{rd}`"]
        if summary:
            md.append(f"- {summary.get('global_steps')} steps on {summary.get('train_examples')} examples, "
                      f"{summary.get('train_tokens_per_s', 0):.0f} tokens/s, best eval loss "
                      f"{summary.get('best_eval_loss')}")
        slug = rd.name
        if ecg.gate_rows(rows):
            dist = ecg.gate_distribution(rows, summary.get("final_gates"))
            p3 = ecg.plot_gate_distribution(dist, out / f"fig3_gate_distribution_{slug}.png")
            p4 = ecg.plot_gate_dynamics(ecg.gate_dynamics(rows), out / f"fig4_gate_dynamics_{slug}.png")
            md += [f"- Fig. 3 gate distribution per emotion: ![]({p3.name})",
                   f"- Fig. 4 gate dynamics by group: ![]({p4.name})"]
            final = summary.get("final_gates") or rows and ecg.gate_rows(rows)[-1]["gate"]
            if final:
                vals = sorted(final.items(), key=lambda kv: kv[1])
                md.append(f"- final gates: min {vals[0][0]} {vals[0][1]:.3f}, max {vals[-1][0]} {vals[-1][1]:.3f}, "
                          f"range {vals[-1][1] - vals[0][1]:.3f}")
                entry["final_gates"] = final
            if summary.get("parameter_report"):
                pr = summary["parameter_report"]
                md.append(f"- parameters: LoRA {pr['lora_parameters']:,} + gate {pr['gate_parameters']:,} = "
                          f"{pr['trainable_pct_of_base']:.3f}% of the {pr['base_parameters']:,}-parameter base; same "
                          f"adapter on Qwen2-7B: {pr['paper_backbones_same_adapter']['Qwen2-7B-Instruct']['lora_plus_gate_pct']}% "
                          "(paper: 0.12%)")
            if control and cfg.get("method") == "ecg-lora":
                res = _control(rd, control_limit, control_gates, control_metrics, split, max_new_tokens, progress,
                               control_examples)
                p5 = ecg.plot_causal_control(res, out / f"fig5_causal_control_{slug}.png")
                md.append(f"- Fig. 5 causal control ({res['n_examples']} {split} examples): ![]({p5.name})")
                for k, v in res["scores"].items():
                    md.append(f"  - {k}: " + ", ".join(f"G={g:g}: {x:.4f}" for g, x in zip(res["gates"], v)))
                for m, why in res["skipped"].items():
                    md.append(f"  - metric {m} skipped: {why}")
                entry["causal_control"] = res
        ga = ecg.grad_allocation(rows)
        if ga:
            grads[label] = ga
        st = ecg.strategy_scores(scores)
        if st:
            strategies[label] = st
        md.append("")
        data["runs"][str(rd)] = entry
    if grads:
        p6 = ecg.plot_grad_allocation(grads, out / "fig6_grad_allocation.png")
        md += ["## Gradient allocation (Fig. 6)", "", f"![]({p6.name})", ""]
        for name, g in grads.items():
            v = sorted(g.values())
            md.append(f"- {name}: {len(g)} emotions, mean grad norm {sum(v) / len(v):.4f}, "
                      f"max/min ratio {v[-1] / max(v[0], 1e-12):.2f}")
        md.append("")
        data["grad_allocation"] = grads
    if strategies:
        p2 = ecg.plot_strategy_shift(strategies, out / "fig2_strategy_shift.png")
        md += ["## Strategy shift (Fig. 2)", "", f"![]({p2.name})", ""]
        data["strategies"] = strategies
    else:
        md += ["(Fig. 2 strategy shift: no EPITOME / Emp-F1 scores in the runs' scores.json — run `empathkit "
               "evaluate` with the empathy metrics first.)", ""]
    (out / "report.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    p = out / "report.md"
    p.write_text("\n".join(md), encoding="utf-8")
    return p


def _control(rd: Path, limit: int, gates, metrics, split: str, max_new_tokens: int, progress: bool,
             examples=None) -> dict:
    from empathkit.api import examples_for, generation_settings, load_generator, resolve
    from empathkit.reports import ecg

    rc = resolve(load_run_config(rd))
    examples = examples_for(rc, split, limit) if examples is None else list(examples)[:limit]
    gen = load_generator(run_dir=rd)
    s = generation_settings(None, gen, {"max_new_tokens": max_new_tokens, "batch_size": 16, "seed": rc.seed})
    return ecg.causal_control(gen, examples, gates, metrics, s, progress)
