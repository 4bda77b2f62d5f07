"""EmPO on a CPU: base prompt vs SFT vs SFT+DPO on SmolLM2-135M-Instruct, same ED test subset, several seeds.

    python benchmarks/empo_cpu.py                       # recipe empo/cpu-small, seeds 0 1 2, 150 test prompts
    python benchmarks/empo_cpu.py --quick               # a 3-minute smoke run (tiny sizes; results not written)

One SFT run (seed 0) is shared by every seed; each seed trains its own DPO adapter with its own rejected draws
(EmPO Table 2 varies seed + draw). ``base`` (the backbone with the same system prompt) and ``sft`` are deterministic
(greedy decoding) and generated once. Metrics from the empathkit registry (EmPO Tables 2, 4, 5): DIFF-EPITOME (+ ER /
IP / EX), BERTScore, NIDF, intensity / valence / arousal distances (absolute, as in the paper), response tries,
mean length. Metrics whose resources are missing (e.g. untrained EPITOME classifiers) are listed as skipped.
Writes benchmarks/results/empo_cpu.{json,md}; run directories go to --work-dir (outside the repository).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

METRICS = ["diff-epitome", "bertscore", "nidf", "word-choice", "response-tries", "length"]
# columns of the Markdown table (the aggregate keys the metrics report)
COLUMNS = ["diff-epitome", "diff-er", "diff-ip", "diff-ex", "bertscore-f1", "nidf", "wc-intensity-abs",
           "wc-valence-abs", "wc-arousal-abs", "tries-templates-pct", "tries-compression",
           "tries-unique-start-words", "length"]


def dpo_training_summary(work: Path, seeds) -> dict:
    """Per seed: steps, runtime, first/last logged DPO loss, reward accuracy and margin (from TRL's log)."""
    out = {}
    for s in seeds:
        rd = work / f"seed-{s}"
        info = json.loads((rd / "dpo_info.json").read_text())
        logs = [json.loads(x) for x in (rd / "dpo_log.jsonl").read_text().splitlines() if x.strip()]
        steps = [r for r in logs if "loss" in r and "rewards/accuracies" in r]
        out[f"seed-{s}"] = {
            "steps": info["global_step"], "pairs_per_epoch": info["pairs_per_epoch"], "draws": info["draws"],
            "max_prompt_length": info["max_prompt_length"], "max_completion_length": info["max_completion_length"],
            "train_runtime_s": info["train_runtime_s"], "train_loss": info["train_loss"],
            "first_loss": steps[0]["loss"] if steps else None, "last_loss": steps[-1]["loss"] if steps else None,
            "last_reward_accuracy": steps[-1]["rewards/accuracies"] if steps else None,
            "last_reward_margin": steps[-1]["rewards/margins"] if steps else None,
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="empo/cpu-small")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--test-limit", type=int, default=150)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--work-dir", default="/tmp/empathkit-bench/empo_cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (1 is faster on a crowded CPU)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run; nothing written to benchmarks/results")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    args = ap.parse_args(argv)

    import logging

    from empathkit.cli.common import setup_logging
    from empathkit.config import load_config
    from empathkit.methods.empo.stability import run_stability, to_markdown
    from empathkit.models.generation import GenerationSettings
    from empathkit.reports.tables import markdown_table

    setup_logging()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    logging.getLogger("empathkit.evaluation").setLevel(logging.WARNING)
    overrides = list(args.overrides)
    if args.quick:
        overrides += ["train.max_steps=2", "data.train_limit=16", "train.dpo.train_limit=8", "train.dpo.epochs=2",
                      "train.dpo.batch_size=4"]
        args.test_limit, args.seeds = 8, args.seeds[:2]
    cfg = load_config(args.recipe, overrides)
    work = Path(args.work_dir + ("-quick" if args.quick else ""))
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=0)
    t0 = time.time()
    summary = run_stability(cfg, args.seeds, work, systems=("base", "sft", "sft+dpo"), share_sft=True,
                            test_limit=args.test_limit, metrics=METRICS, settings=settings, progress=False)
    wall = time.time() - t0
    stab = json.loads((work / "stability.json").read_text())
    sft_summary = json.loads((work / f"seed-{args.seeds[0]}" / "sft" / "train_summary.json").read_text())
    result = {
        "recipe": args.recipe, "overrides": overrides, "seeds": args.seeds, "n_test": stab["n_test"],
        "generation": settings.model_dump(), "threads": args.threads, "metrics": METRICS, "summary": summary, "skipped": stab["skipped"],
        "timings_s": stab["timings_s"] | {"total": wall},
        "sft": {k: sft_summary.get(k) for k in ("global_steps", "train_examples", "train_runtime_s", "train_loss",
                                                 "train_tokens_per_s")},
        "dpo": dpo_training_summary(work, args.seeds), "work_dir": str(work),
    }
    print(to_markdown(summary, [c for c in COLUMNS if any(c in v for v in summary.values())]))
    if args.quick:
        print(json.dumps(result["dpo"], indent=1), f"\nquick run done in {wall:.0f}s (results not written)")
        return 0
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "empo_cpu.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    cols = [c for c in COLUMNS if any(c in v for v in summary.values())]
    md = [
        "# EmPO on CPU: base prompt vs SFT vs SFT+DPO (SmolLM2-135M-Instruct)", "",
        f"Recipe `{args.recipe}`, seeds {args.seeds} (one shared SFT run; each seed = its own DPO adapter and "
        f"rejected draws), {stab['n_test']} ED test prompts (last-listener, emotion-stratified), greedy decoding, "
        f"{args.max_new_tokens} new tokens. Cells: mean ± SD over seeds (base and SFT are deterministic: 1 run). "
        f"Total wall time {wall / 60:.1f} min on a shared 2-core CPU.", "",
        to_markdown(summary, cols), "",
        "Lower is better for diff-* and wc-*-abs (distance between prompt and response word-choice scores); higher "
        "for BERTScore, NIDF, tries-templates-pct / compression / unique start words.", "",
        "## DPO training per seed", "",
        markdown_table(["seed", "steps", "pairs/epoch", "draws", "max prompt / completion tokens (p95)",
                        "first → last loss", "last reward acc.", "last margin", "runtime (s)"],
                       [[s, d["steps"], d["pairs_per_epoch"], d["draws"],
                         f"{d['max_prompt_length']} / {d['max_completion_length']}",
                         f"{d['first_loss']:.4f} → {d['last_loss']:.4f}", f"{d['last_reward_accuracy']:.2f}",
                         f"{d['last_reward_margin']:.4f}", f"{d['train_runtime_s']:.0f}"]
                        for s, d in result["dpo"].items()], align="l" + "r" * 8),
    ]
    md += ["", f"SFT: {result['sft']['global_steps']} steps on {result['sft']['train_examples']} examples, "
               f"{result['sft']['train_runtime_s']:.0f} s.", "", "## Timings (s)", ""]
    md += [f"- {k}: {v:.0f}" for k, v in result["timings_s"].items()]
    if stab["skipped"]:
        md += ["", "## Skipped metrics", ""] + [f"- `{m}`: {why}" for m, why in stab["skipped"].items()]
    (out / "empo_cpu.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"wrote {out / 'empo_cpu.json'} and {out / 'empo_cpu.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
