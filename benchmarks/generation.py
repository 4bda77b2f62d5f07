"""Batch 1 vs the batched generation path on the default backbone (SmolLM2-135M-Instruct, float32, CPU).

Same prompts (structured-prompt baseline on ED test, last-listener), greedy, same max_new_tokens. Reports
responses/s and generated tokens/s; the ratio is the number to quote (absolute speed varies ±25 % here).

    python benchmarks/generation.py [--n-single 16] [--n-batched 128] [--batch-sizes 8 32 64]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from empathkit.data import load_examples  # noqa: E402
from empathkit.methods.prompt import load as load_prompt  # noqa: E402
from empathkit.models.generation import GenerationSettings, generate_texts  # noqa: E402


def run(gen, prompts, batch_size, max_new):
    s = GenerationSettings(max_new_tokens=max_new, batch_size=batch_size)
    t0 = time.perf_counter()
    outs = generate_texts(gen.model, gen.tokenizer, prompts, s, progress=False)
    dt = time.perf_counter() - t0
    toks = sum(o.new_tokens for o in outs)
    return {"batch_size": batch_size, "responses": len(prompts), "seconds": dt, "responses_per_s": len(prompts) / dt,
            "new_tokens_per_s": toks / dt, "mean_prompt_tokens": sum(o.prompt_tokens for o in outs) / len(outs)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-single", type=int, default=16)
    ap.add_argument("--n-batched", type=int, default=128)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    a = ap.parse_args()
    gen = load_prompt({"template": "structured-v1"})
    exs = load_examples("ed", "test", "last-listener", limit=max(a.n_single, a.n_batched), seed=0)
    s = GenerationSettings(max_new_tokens=a.max_new_tokens)
    prompts = [gen.prompt_for(e, s) for e in exs]
    rows = [run(gen, prompts[:a.n_single], 1, a.max_new_tokens)]
    for bs in a.batch_sizes:
        rows.append(run(gen, prompts[:a.n_batched], bs, a.max_new_tokens))
        print(rows[-1], flush=True)
    base = rows[0]["responses_per_s"]
    for r in rows:
        r["speedup_vs_batch1"] = r["responses_per_s"] / base
    write_results("generation", {"model": "smollm2-135m-instruct", "max_new_tokens": a.max_new_tokens,
                                 "prompt": "structured-v1, ED test last-listener", "rows": rows},
                  [{k: r[k] for k in ("batch_size", "responses", "seconds", "responses_per_s", "new_tokens_per_s",
                                      "speedup_vs_batch1")} for r in rows],
                  "Batched generation vs batch 1 (SmolLM2-135M-Instruct, CPU)",
                  ["Greedy decoding, float32, left padding, length-bucketed batches.",
                   "Other jobs may share the 2 cores; compare rows of the same run."])
    print(open(Path(__file__).parent / "results" / "generation.md").read())


if __name__ == "__main__":
    main()
