"""Generation speed on the default backbone (SmolLM2-135M-Instruct, CPU): batch 1 / 8 / 32, with and without the
shared-prefix KV cache, per precision (float32, and bfloat16 where it is native), plus each precision's perplexity on
ED references and its greedy agreement with float32.

Same prompts (structured-prompt baseline on ED test, last-listener), greedy, same max_new_tokens, repetition penalty
1.1. Engines alternate within each repetition so they see the same machine load; quote the same-run ratios
(absolute speed varies ±25 % here and more when other jobs share the 2 cores).

    python benchmarks/generation.py [--reps 2] [--n 8 32 64] [--batch-sizes 1 8 32] [--ppl-n 128]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from empathkit.data import load_examples  # noqa: E402
from empathkit.methods.prompt import load as load_prompt  # noqa: E402
from empathkit.models.backbones import native_bf16  # noqa: E402
from empathkit.models.chat import example_messages  # noqa: E402
from empathkit.models.generation import GenerationSettings, generate_texts, prefix_store  # noqa: E402
from empathkit.models.precision import apply_precision  # noqa: E402
from empathkit.types import Controls  # noqa: E402


def run(model, tok, prompts, batch_size, max_new, prefix_cache):
    s = GenerationSettings(max_new_tokens=max_new, batch_size=batch_size, prefix_cache=prefix_cache)
    if prefix_cache:  # the store lives on the model: start cold, as a fresh generator would
        prefix_store(model).entries.clear()
    t0 = time.perf_counter()
    outs = generate_texts(model, tok, prompts, s, progress=False)
    dt = time.perf_counter() - t0
    return dt, [o.text for o in outs], sum(o.new_tokens for o in outs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 32, 64], help="responses per batch size")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--ppl-n", type=int, default=128)
    a = ap.parse_args()
    gen = load_prompt({"template": "structured-v1"})
    exs = load_examples("ed", "test", "last-listener", limit=max(max(a.n), a.ppl_n), seed=0)
    s = GenerationSettings(max_new_tokens=a.max_new_tokens)
    prompts = [gen.prompt(example_messages(e), Controls.from_example(e), s) for e in exs]
    tok = gen.tokenizer
    models = {"float32": gen.model}
    if native_bf16():
        g16 = copy.copy(gen)
        g16.model, g16.info = copy.deepcopy(gen.model), {}
        apply_precision(g16, "bfloat16")
        models["bfloat16"] = g16.model
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    from empathkit.models.generation import _common_prefix

    shared = _common_prefix(ids)
    rows, texts = [], {}
    for rep in range(a.reps):
        for bs, n in zip(a.batch_sizes, a.n):
            for prec, model in models.items():
                for pc in (False, True):
                    dt, t, new = run(model, tok, prompts[:n], bs, a.max_new_tokens, pc)
                    texts[(prec, bs, pc)] = t
                    rows.append({"rep": rep, "precision": prec, "batch_size": bs, "prefix_cache": pc, "responses": n,
                                 "seconds": dt, "responses_per_s": n / dt, "new_tokens_per_s": new / dt})
                    print(rows[-1], flush=True)
    ppl = {}
    for prec, model in models.items():
        g = copy.copy(gen)
        g.model = model
        t0 = time.perf_counter()
        sc = g.score(exs[:a.ppl_n], batch_size=16)
        ppl[prec] = {"ppl": math.exp(sum(x.nll for x in sc) / sum(x.tokens for x in sc)),
                     "seconds": time.perf_counter() - t0}
        print(prec, ppl[prec], flush=True)
    base = {}
    table = []
    for bs in a.batch_sizes:
        for prec in models:
            for pc in (False, True):
                rs = [r for r in rows if (r["precision"], r["batch_size"], r["prefix_cache"]) == (prec, bs, pc)]
                med = statistics.median(r["responses_per_s"] for r in rs)
                base.setdefault(bs, med)
                ref = texts[("float32", bs, False)]
                agree = sum(x == y for x, y in zip(texts[(prec, bs, pc)], ref))
                table.append({"batch": bs, "precision": prec, "prefix cache": "on" if pc else "off",
                              "resp/s (median)": med, "ratio vs fp32 no-cache": med / base[bs],
                              "new tok/s": statistics.median(r["new_tokens_per_s"] for r in rs),
                              "greedy = fp32 no-cache": f"{agree}/{len(ref)}",
                              "PPL (ED refs)": ppl[prec]["ppl"]})
    write_results("generation", {"model": "smollm2-135m-instruct", "max_new_tokens": a.max_new_tokens,
                                 "prompt": "structured-v1, ED test last-listener", "shared_prefix_tokens": shared,
                                 "mean_prompt_tokens": sum(map(len, ids)) / len(ids), "perplexity": ppl,
                                 "rows": rows}, table,
                  "Generation: batch size × precision × shared-prefix KV cache (SmolLM2-135M-Instruct, CPU)",
                  [f"Greedy, {a.max_new_tokens} new tokens, repetition penalty 1.1, length-bucketed batches, "
                   f"{a.reps} repetitions alternating engines; the prompts share {shared} of "
                   f"{sum(map(len, ids)) / len(ids):.0f} tokens on average (the structured-v1 system prompt's "
                   "head; the emotion-specific part follows).",
                   f"PPL: the generator's own `score` on {a.ppl_n} ED test references (last-listener).",
                   "Other jobs may share the 2 cores; compare rows of the same run."])
    print((Path(__file__).parent / "results" / "generation.md").read_text())


if __name__ == "__main__":
    main()
