"""Training speed: the float32 / random-order / full-logits path vs target-only logits (``train.target_logits``), bf16
autocast (where native) and length-grouped batches, on
``recipes/sft/cpu-small`` (SmolLM2-135M-Instruct, LoRA r=16 on q/k/v/o, batch 8, max_length 96, same data and seed).

Settings alternate (old, new, old, new, …) so both see the same machine load. Reports training tokens/s (non-padding
tokens through forward + backward, evaluation excluded: the driver's ``train_tokens_per_s``), wall seconds and the
logged training-loss curve of each run; the same-run ratio new / old is the number to quote.

    python benchmarks/training.py [--reps 2] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from empathkit.api import train  # noqa: E402
from empathkit.config import load_config  # noqa: E402

SETTINGS = {
    "float32, random order, full logits (old default)": {"bf16": False, "sampling": "random", "target_logits": False},
    "float32, random order, target logits (new default)": {"bf16": False, "sampling": "random"},
    "bf16 auto, group_by_length, full logits": {"bf16": "auto", "sampling": "group_by_length",
                                                "target_logits": False},
    "bf16 auto, group_by_length, target logits": {"bf16": "auto", "sampling": "group_by_length"},
    # frozen base weights stored in bfloat16 (no autocast casts per op); PEFT keeps the LoRA weights in float32
    "bf16 weights (model.dtype), group_by_length, target logits": {"sampling": "group_by_length",
                                                                    "model": {"dtype": "bfloat16"}},
}


def one(name: str, extra: dict, steps: int, out: Path) -> dict:
    cfg = load_config("sft/cpu-small")
    extra = dict(extra)
    cfg["model"] = {**cfg["model"], **extra.pop("model", {})}
    cfg["train"] = {**cfg["train"], **extra, "max_steps": steps, "eval_every": steps, "log_every": 5,
                    "log_emotion_grads": False}
    cfg["output_dir"] = str(out)
    t0 = time.perf_counter()
    rd = train(cfg, out / name.split(",")[0].replace(" ", "-") / str(time.time_ns()), progress=False)
    wall = time.perf_counter() - t0
    summ = json.loads((rd / "train_summary.json").read_text())
    losses = [r["loss"] for r in map(json.loads, (rd / "log.jsonl").read_text().splitlines())
              if "loss" in r and "eval_loss" not in r]
    return {"setting": name, "train_tokens_per_s": summ["train_tokens_per_s"], "wall_s": wall, "losses": losses}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--steps", type=int, default=50)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            for name, extra in SETTINGS.items():
                r = one(name, extra, a.steps, Path(tmp))
                r["rep"] = rep
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "losses"}), flush=True)
    base = statistics.median(r["train_tokens_per_s"] for r in rows if r["setting"] == next(iter(SETTINGS)))
    table = []
    for name in SETTINGS:
        rs = [r for r in rows if r["setting"] == name]
        tps = statistics.median(r["train_tokens_per_s"] for r in rs)
        table.append({"setting": name, "tokens/s (median)": tps, "ratio vs old": tps / base,
                      "wall s (median)": statistics.median(r["wall_s"] for r in rs),
                      "first / last logged loss": f"{rs[0]['losses'][0]:.3f} / {rs[0]['losses'][-1]:.3f}"})
    write_results("training", {"recipe": "sft/cpu-small", "steps": a.steps, "reps": a.reps, "rows": rows}, table,
                  "Training speed: float32 vs bf16 autocast, length-grouped batches and target-only logits (sft/cpu-small)",
                  [f"{a.steps} steps × batch 8 per run, settings alternating, {a.reps} repetitions; tokens/s counts "
                   "non-padding tokens in forward + backward (evaluation excluded).",
                   "Loss curves: `training.json` rows[].losses (every 5 steps); same seed and data for every run.",
                   "Other jobs may share the 2 cores; compare rows of the same run."])
    print((Path(__file__).parent / "results" / "training.md").read_text())


if __name__ == "__main__":
    main()
