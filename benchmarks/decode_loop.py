"""Batch-1 decoding loop of transformers' ``generate`` on SmolLM2-135M-Instruct (CPU): the dynamic KV cache (default)
vs ``generation.cache: static`` vs static + ``generation.compile: true`` (transformers compiles the decoding step).

Same ED test prompts (structured-v1, last-listener), greedy, a fixed reply length (``min_new_tokens`` =
``max_new_tokens``, so every mode decodes the same number of tokens), repetition penalty 1.1, float32, modes
alternating per prompt. The compile mode is warmed up first on two other prompts (the second prompt length makes
torch's shapes dynamic, after which new lengths do not recompile); the warm-up time is reported on its own. Decode
tokens/s splits each reply at its first streamed token (prefill + first token before it). Writes
``benchmarks/results/decode-loop.{json,md}``.

    python benchmarks/decode_loop.py [--n 12] [--max-new-tokens 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

MODES = {"dynamic cache": {}, "static cache": {"cache": "static"}, "static + compile": {"cache": "static",
                                                                                        "compile": True}}


def one(model, tok, prompt: str, settings) -> tuple[float, float, str, int]:
    """(seconds to the first token, seconds after it, text, new tokens) of one streamed greedy reply."""
    from empathkit.models.generation import generate_texts

    first: list[float] = []
    t0 = time.perf_counter()
    out = generate_texts(model, tok, [prompt], settings, progress=False,
                         on_text=lambda i, d: first or first.append(time.perf_counter()))[0]
    t1 = time.perf_counter()
    f = first[0] if first else t1
    return f - t0, t1 - f, out.text, out.new_tokens


def report(rows: list[dict], meta: dict) -> None:
    """The table from the rows: per mode the median over prompts of its decode speed-up against the dynamic cache
    on the same prompt (one-off recompiles, replies slower than 3x the mode's median, are counted, not averaged)."""
    ref = {r["prompt"]: r for r in rows if r["mode"] == "dynamic cache"}
    table = []
    for name in MODES:
        rs = [r for r in rows if r["mode"] == name]
        med = statistics.median(r["decode_s"] for r in rs)
        slow = [r for r in rs if r["decode_s"] > 3 * med]
        ok = [r for r in rs if r not in slow]
        table.append({"mode": name,
                      "decode tok/s (median)": statistics.median(max(r["new_tokens"] - 1, 0) / r["decode_s"] for r in ok),
                      "decode speed-up vs dynamic (median per prompt)": statistics.median(
                          ref[r["prompt"]]["decode_s"] / r["decode_s"] for r in ok),
                      "reply s (median)": statistics.median(r["prefill_s"] + r["decode_s"] for r in rs),
                      "first token s (median)": statistics.median(r["prefill_s"] for r in rs),
                      "recompiles in the timed set": len(slow),
                      "greedy = dynamic": f"{sum(ref[r['prompt']]['text'] == r['text'] for r in rs)}/{len(rs)}"})
    warm, l0, l1 = meta["compile_warmup_s"], meta["load_start"], meta["load_end"]
    write_results("decode-loop", {**meta, "rows": rows}, table,
                  "Batch-1 decoding loop: dynamic vs static KV cache vs static + compiled step (SmolLM2-135M, CPU)",
                  [f"{meta['n']} ED test prompts (structured-v1), greedy, exactly {meta['max_new_tokens']} new tokens, "
                   f"repetition penalty 1.1, float32, {meta['threads']} torch thread(s), modes alternating per prompt.",
                   "Compile warm-up (two prompts outside the timed set, not in the table): "
                   + ", ".join(f"{w:.0f} s" for w in warm) + "; a reply slower than 3x its mode's median is "
                   "counted as a recompile (a new prompt length) and left out of the speed columns.",
                   f"Load average at start {l0[0]:.1f}, at end {l1[0]:.1f} (other jobs share the 2 cores; quote the "
                   "same-run ratio)."])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12, help="timed prompts (each decoded in every mode)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report", action="store_true", help="only rewrite the table from decode-loop.json")
    a = ap.parse_args()
    if a.report:
        import json

        d = json.loads((Path(__file__).parent / "results" / "decode-loop.json").read_text())
        meta = {k: d.get(k) for k in ("model", "max_new_tokens", "threads", "compile_warmup_s", "load_start",
                                      "load_end", "date", "versions")}  # the measured run's
        meta["n"] = d.get("n") or len({r["prompt"] for r in d["rows"]})
        report(d["rows"], meta)
        print((Path(__file__).parent / "results" / "decode-loop.md").read_text())
        return
    import torch

    from empathkit.data import load_examples
    from empathkit.methods.prompt import load as load_prompt
    from empathkit.models.chat import example_messages
    from empathkit.models.generation import GenerationSettings
    from empathkit.types import Controls

    torch.set_num_threads(a.threads)
    gen = load_prompt({"template": "structured-v1"})
    model, tok = gen.model, gen.tokenizer
    model.generation_config.min_new_tokens = a.max_new_tokens  # the same decode length in every mode
    exs = load_examples("ed", "test", "last-listener", limit=a.n + 2, seed=0)
    base = GenerationSettings(max_new_tokens=a.max_new_tokens, batch_size=1, prefix_cache=False)
    prompts = [gen.prompt(example_messages(e), Controls.from_example(e), base) for e in exs]
    load0 = __import__("os").getloadavg()
    warm = []
    for p in prompts[a.n:]:  # compile warm-up on two prompts outside the timed set
        t0 = time.perf_counter()
        one(model, tok, p, base.model_copy(update=MODES["static + compile"]))
        warm.append(time.perf_counter() - t0)
        print("warm-up", round(warm[-1], 1), flush=True)
    rows = []
    for i, p in enumerate(prompts[: a.n]):
        order = list(MODES) if i % 2 == 0 else list(reversed(MODES))
        for name in order:
            pre, dec, text, new = one(model, tok, p, base.model_copy(update=MODES[name]))
            rows.append({"prompt": i, "mode": name, "prefill_s": pre, "decode_s": dec, "new_tokens": new,
                         "text": text})
            print(rows[-1]["mode"], round(pre, 2), round(dec, 2), new, flush=True)
    load1 = __import__("os").getloadavg()
    report(rows, {"model": "smollm2-135m-instruct", "max_new_tokens": a.max_new_tokens, "threads": a.threads,
                  "n": a.n, "compile_warmup_s": warm, "load_start": load0, "load_end": load1})
    print((Path(__file__).parent / "results" / "decode-loop.md").read_text())


if __name__ == "__main__":
    main()
