"""REG on SmolLM2-135M-Instruct (CPU): zero-shot prompt vs SFT without retrieval vs semantic-only retrieval
(LEMPEx-style, no gold-emotion filter) vs REG vs REG w/o RCA vs REG w/o EA — same ED subset, seed and sizes.

Systems (all LoRA r=16 on q,k,v,o of SmolLM2-135M-Instruct, exemplars in the system prompt, docs/methods/reg.md):

| system | G1 | retriever | G2 |
|---|---|---|---|
| zero-shot | – (``prompt`` method, base model) | – | – |
| sft | G1 without tags (LoRA SFT on the base prompt) | – | – (evaluated with no exemplar) |
| semantic | = sft's G1 | MiniLM cosine, untrained | stage ``g2`` (L_G2 only), from G1 |
| reg | G1 with attribute tags | stage 2 + ``joint`` | ``joint`` (Eq. 7), from G1 |
| reg w/o RCA | = reg's G1 | ``distill.k = 0`` | ``joint`` |
| reg w/o EA | = sft's G1 | stage 2 + ``joint``, cosine only | ``joint``, no tags |

Reported: PPL from each generator's own ``score`` on the gold responses, Dist-1/2 (corpus, ``dist``), BLEU-1/2
(NLTK corpus BLEU, ``bleu-nltk``, and averaged sentence BLEU, ``bleu-sent``), Acc_emo (``acc-emo-exemplar``: the
similarity-weighted ED-label vote of the retrieved exemplars), the alignment shares (retrieved exemplars with the
query's ED emotion / polarity group; random retrieval as the floor), retriever-training seconds (stage 2 + joint) and
retrieval latency per query. Every system's result is cached in ``--runs/<system>/result.json`` and every trained run
is reused, so a restarted benchmark continues where it stopped.

    nohup .venv/bin/python benchmarks/reg_cpu.py > /work/logs/reg-bench.log 2>&1 &
    python benchmarks/reg_cpu.py --quick          # minutes, smoke test (writes reg-cpu-quick.*)

Needs the full-ED-train index built once (``--index``; ``empathkit retrieve --build-index``) and the EPITOME
classifiers (``empathkit classifiers train epitome-er epitome-ip epitome-ex``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METRICS = ["dist", "bleu-nltk", "bleu-sent", "acc-emo-exemplar"]
SYSTEMS = ["zero-shot", "sft", "semantic", "reg", "reg-wo-rca", "reg-wo-ea"]
COLUMNS = [("ppl", "PPL"), ("dist-1", "Dist-1"), ("dist-2", "Dist-2"), ("bleu-nltk-1", "BLEU-1"),
           ("bleu-nltk-2", "BLEU-2"), ("bleu-sent-1", "BLEU-1 (sent)"), ("bleu-sent-2", "BLEU-2 (sent)"),
           ("acc-emo-exemplar", "Acc_emo"), ("align_emotion", "aligned: emotion"),
           ("align_polarity", "aligned: polarity"), ("retriever_train_s", "retriever train s"),
           ("latency_ms", "retrieval ms/query")]


def load_avg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def other_jobs() -> list[str]:
    """What else was on the machine (process names and CPU share, top 8; this process excluded)."""
    import subprocess

    try:
        out = subprocess.run(["ps", "-eo", "pcpu,etimes,comm,args", "--sort=-pcpu"], capture_output=True,
                             text=True, timeout=10).stdout.splitlines()[1:9]
    except Exception:  # noqa: BLE001
        return []
    me = str(os.getpid())
    return [" ".join(x.split()[:3]) + " " + " ".join(x.split()[3:])[:100] for x in out if me not in x]


def base_config(args, extra_train: dict | None = None, extra_model: dict | None = None) -> dict:
    from empathkit.config import load_config

    cfg = load_config("reg/cpu-small")
    cfg["seed"] = args.seed
    cfg["data"].update(train_limit=args.train, valid_limit=None)
    cfg["model"].update(k=args.k, exemplar_tokens=args.exemplar_tokens)
    if args.corpus_limit:
        cfg["model"]["retrieval"]["data"]["train_limit"] = args.corpus_limit
    cfg["model"].update(extra_model or {})
    cfg["train"].update(max_steps=args.g1_steps, batch_size=8, eval_every=max(args.g1_steps, 1),
                        early_stopping_patience=None, save_every=10_000, log_every=5, index_from=str(args.index),
                        retriever={"pool": args.pool, "queries": args.queries, "epochs": args.retriever_epochs,
                                   "batch_size": 8, "lr": 2e-5, "decode_batch_size": 16,
                                   "max_new_tokens": args.decode_tokens, "seed": args.seed,
                                   "distill": {"k": 0.1, "tau": 0.1, "tau_r": 0.1, "loss": "kl-fid"}},
                        g2={"max_steps": args.g2_steps, "batch_size": 4, "max_length": 320, "lr": 3e-4})
    cfg["train"].update(extra_train or {})
    return cfg


NOTAGS = {"mode": "semantic", "attribute_tags": False, "exemplar_tags": False}


PLAN = {"semantic": ("notags", {"stages": ["g2"]}, NOTAGS),
        "reg": ("tags", {"stages": ["retriever", "joint"]}, None),
        "reg-wo-rca": ("tags", {"stages": ["retriever", "joint"], "ablations": ["w/o-rca"]}, None),
        "reg-wo-ea": ("notags", {"stages": ["retriever", "joint"], "ablations": ["w/o-ea"]}, None)}


def ensure_trained(name: str, args, log) -> Path | None:
    """The run dir of system ``name``, trained now unless a finished one exists (G1s are trained once and copied:
    sft / semantic / w/o EA share the untagged G1, reg / w/o RCA the tagged one)."""
    from empathkit.methods.reg.train import train_reg

    if name == "zero-shot":
        return None
    runs = args.runs
    runs.mkdir(parents=True, exist_ok=True)
    src = "notags" if name == "sft" else PLAN[name][0]
    g1 = runs / f"g1-{src}"
    if not (g1 / "reg_stages.json").is_file():
        t0 = time.time()
        train_reg(base_config(args, {"stages": ["g1"]}, NOTAGS if src == "notags" else None), g1, progress=False)
        log(f"G1 ({src}) trained in {time.time() - t0:.0f}s")
    if name == "sft":
        return g1
    rd = runs / name
    if (rd / "g2" / "done").is_file() and (rd / "reg_stages.json").is_file():
        return rd
    if not (rd / "adapter").is_dir():
        shutil.rmtree(rd, ignore_errors=True)
        shutil.copytree(g1, rd)
    _, train_over, model_over = PLAN[name]
    t0 = time.time()
    train_reg(base_config(args, train_over, model_over), rd, progress=False)
    log(f"{name}: stages {train_over['stages']} in {time.time() - t0:.0f}s")
    return rd


def build_shared_index(args, log) -> None:
    """The one corpus index every run copies (``train.index_from``); built here only when missing."""
    from empathkit.config import validate
    from empathkit.methods.reg.config import REGModelConfig
    from empathkit.methods.reg.index import build_index
    from empathkit.methods.reg.train import retrieval_config
    from empathkit.runconfig import resolve

    rc = resolve(base_config(args))
    t0 = time.time()
    build_index(retrieval_config(validate(REGModelConfig, rc.model, "model"), rc), args.index, progress=False)
    log(f"index {args.index} ready in {time.time() - t0:.0f}s")


def generator_for(name: str, rd: Path | None):
    from empathkit.api import load_generator

    if name == "zero-shot":
        return load_generator("prompt", None, {})
    if name == "sft":  # G1 without tags and without any exemplar: LoRA SFT on the base prompt
        from empathkit.methods.reg.config import REGModelConfig
        from empathkit.methods.reg.train import load_g1

        from empathkit.runconfig import resolve
        from empathkit.runs import load_run_config

        mc = REGModelConfig(**resolve(load_run_config(rd)).model)
        return load_g1(rd, mc, None)
    return load_generator(run_dir=rd)


def alignment_of(preds, by_id) -> dict[str, float]:
    from empathkit.data.emotions import polarity

    same = pol = n = 0
    for p in preds:
        for eid in p.extra.get("exemplars") or []:
            e = by_id.get(eid)
            if e is None or not e.attributes.get("emotion"):
                continue
            n += 1
            same += e.attributes["emotion"] == p.emotion
            pol += polarity(e.attributes["emotion"]) == polarity(p.emotion)
    return {"align_emotion": same / n, "align_polarity": pol / n, "align_n": n} if n else {}


def latency(gen, test, n: int) -> dict[str, float]:
    """Per-query retrieval time of a REG run generator: one query at a time (median / p90, after a warm-up) and
    all ``n`` in one call; query attributes included when the mode needs them."""
    from empathkit.methods.reg.method import conversation_context

    ctxs = [[t.text for t in ex.context] for ex in test[:n]]
    convs = [[{"role": "user", "content": c} for c in ctx] for ctx in ctxs]

    def one(i):
        attrs = gen.attribute_fn([convs[i]]) if gen.attribute_fn else [None]
        return gen.retrieve([conversation_context(convs[i])], attrs, None)

    one(0)
    times = []
    for i in range(len(ctxs)):
        t0 = time.perf_counter()
        one(i)
        times.append(1000 * (time.perf_counter() - t0))
    t0 = time.perf_counter()
    attrs = gen.attribute_fn(convs) if gen.attribute_fn else [None] * len(convs)
    gen.retrieve(ctxs, attrs, None)
    batch = 1000 * (time.perf_counter() - t0) / len(ctxs)
    times.sort()
    return {"latency_ms": statistics.median(times), "latency_p90_ms": times[int(0.9 * (len(times) - 1))],
            "latency_batched_ms": batch}


def evaluate_system(name, rd, test, settings, args, by_id) -> dict:
    import empathkit.metrics.retrieval  # noqa: F401 — registers acc-emo-exemplar (until it is in FAMILIES)
    from empathkit.evaluation import score
    from empathkit.runs import write_jsonl

    t0 = time.time()
    gen = generator_for(name, rd)
    t_load = time.time() - t0
    t0 = time.time()
    preds = gen.generate(test, settings, progress=False)
    t_gen = time.time() - t0
    write_jsonl(preds, args.runs / f"predictions-{name}.jsonl")
    t0 = time.time()
    scores = gen.score(test)
    nll, tok = sum(s.nll for s in scores), sum(s.tokens for s in scores)
    t_score = time.time() - t0
    res: dict = {"ppl": math.exp(nll / max(tok, 1)), "ppl_tokens": tok}
    res.update(score(preds, metrics=METRICS, progress=False))
    res.update(alignment_of(preds, by_id))
    if rd is not None and name not in ("sft",):
        st = json.loads((rd / "reg_stages.json").read_text())
        secs = st["seconds"]
        res["stage_seconds"] = secs
        if "retriever" in secs or "joint" in secs:
            res["retriever_train_s"] = secs.get("retriever", 0.0)
            rcfg = rd / "retriever" / "retriever_config.json"
            if rcfg.is_file():
                res["retriever_stage2"] = json.loads(rcfg.read_text())["seconds"]
            res["joint_stage_s"] = secs.get("joint")
        if hasattr(gen, "retrieve"):
            res.update(latency(gen, test, args.latency_queries))
    res.update(seconds={"load": t_load, "generate": t_gen, "score": t_score}, load_avg=load_avg(),
               examples=[{"emotion": p.emotion, "context": p.context[-1][:160], "prediction": p.prediction,
                          "exemplars": p.extra.get("exemplars")} for p in preds[:2]])
    return res


def random_alignment(test, index, k: int, seed: int) -> dict[str, float]:
    from empathkit.methods.reg.analysis import alignment
    from empathkit.methods.reg.index import RandomRetriever

    rows = RandomRetriever(index.exemplars, seed=seed).search([[t.text for t in ex.context] for ex in test], k=k,
                                                            exclude_dialogue_ids=[ex.dialogue_id for ex in test])
    return alignment(rows, [ex.emotion for ex in test])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, default=Path("/work/cache/reg-index-full"))
    ap.add_argument("--runs", type=Path, default=Path("/work/cache/reg-bench"))
    ap.add_argument("--train", type=int, default=320, help="training examples (G1 / G2 rows)")
    ap.add_argument("--g1-steps", type=int, default=40)
    ap.add_argument("--g2-steps", type=int, default=30)
    ap.add_argument("--queries", type=int, default=48, help="retriever training queries")
    ap.add_argument("--pool", type=int, default=4, help="M: candidates per retriever query")
    ap.add_argument("--retriever-epochs", type=int, default=2)
    ap.add_argument("--decode-tokens", type=int, default=16, help="G1 decode length for the utilities")
    ap.add_argument("--k", type=int, default=3, help="K: exemplars in the prompt")
    ap.add_argument("--exemplar-tokens", type=int, default=32)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--latency-queries", type=int, default=50)
    ap.add_argument("--corpus-limit", type=int, default=None, help="index only this many ED-train exemplars")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, in the order to run them")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.train, args.g1_steps, args.g2_steps, args.queries, args.test = 32, 2, 2, 8, 8
        args.latency_queries, args.runs = 5, args.runs.with_name(args.runs.name + "-quick")
        args.corpus_limit = args.corpus_limit or 1000
        args.index = args.index.with_name(args.index.name + "-quick")

    import torch

    from empathkit.methods.reg.index import ExemplarIndex
    from empathkit.models.generation import GenerationSettings
    from empathkit.runconfig import examples_for, resolve

    t_start = time.time()
    started = {"load_avg": load_avg(), "other_jobs": other_jobs()}

    def log(msg):
        print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {load_avg()})", flush=True)

    args.runs.mkdir(parents=True, exist_ok=True)
    rc = resolve(base_config(args))
    test = examples_for(rc, "test", args.test)
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=32, seed=args.seed)
    build_shared_index(args, log)
    index = ExemplarIndex.load(args.index)
    by_id = {e.id: e for e in index.exemplars}
    systems: dict = {}
    rand = random_alignment(test, index, args.k, args.seed)

    def report(final: bool) -> None:  # after every system: a killed run still leaves the finished ones
        meta = {"complete": final, "quick": args.quick, "seed": args.seed, "train_examples": args.train,
                "g1_steps": args.g1_steps, "g2_steps": args.g2_steps, "g1_batch": 8, "g2_batch": 4,
                "retriever_queries": args.queries, "pool": args.pool, "retriever_epochs": args.retriever_epochs,
                "decode_tokens": args.decode_tokens, "k": args.k, "exemplar_tokens": args.exemplar_tokens,
                "test_examples": len(test), "max_new_tokens": args.max_new_tokens, "corpus_size": len(index),
                "index": str(args.index), "torch_threads": torch.get_num_threads(), "started": started,
                "ended": {"load_avg": load_avg(), "other_jobs": other_jobs()},
                "total_minutes": round((time.time() - t_start) / 60, 1), "recipe": "reg/cpu-small (overridden)"}
        write({"meta": meta, "systems": systems, "random_alignment": rand}, args.quick)

    for name in args.systems.split(","):
        if name not in SYSTEMS:
            raise SystemExit(f"unknown system {name!r}; expected some of {SYSTEMS}")
        f = args.runs / name / "result.json" if name != "zero-shot" else args.runs / "zero-shot.json"
        if f.is_file():
            systems[name] = json.loads(f.read_text())
            continue
        t0 = time.time()
        rd = ensure_trained(name, args, log)
        res = evaluate_system(name, rd, test, settings, args, by_id)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(res, indent=2, default=str))
        systems[name] = res
        log(f"{name}: evaluated in {time.time() - t0:.0f}s")
        report(False)
    report(True)
    log("done")


def write(payload: dict, quick: bool) -> None:
    from benchmarks._common import write_results

    rows = []
    for name, r in payload["systems"].items():
        row = {"system": name}
        for key, col in COLUMNS:
            v = r.get(key)
            row[col] = round(float(v), 4) if isinstance(v, (int, float)) else "–"
        rows.append(row)
    m = payload["meta"]
    ra = payload["random_alignment"]
    notes = [
        f"Sizes: {m['train_examples']} ED-train rows (emotion-stratified, seed {m['seed']}); G1 {m['g1_steps']} steps × "
        f"batch {m['g1_batch']}; retriever: {m['retriever_queries']} queries × M = {m['pool']} candidates, "
        f"{m['retriever_epochs']} epochs, G1 decodes of {m['decode_tokens']} tokens; G2 {m['g2_steps']} steps × batch "
        f"{m['g2_batch']} with K = {m['k']} exemplars ({m['exemplar_tokens']} tokens each); test: the first "
        f"{m['test_examples']} of a seeded stratified ED-test sample, {m['max_new_tokens']} new tokens greedy; corpus "
        f"{m['corpus_size']} ED-train exemplars (own conversation always excluded).",
        "PPL: exp(Σ NLL / Σ tokens) of each generator's own `score` on the gold responses, with the exemplars it "
        "retrieves (zero-shot: the base model under the prompt method's template).",
        "Acc_emo = `acc-emo-exemplar` (score-weighted ED-label vote of the K retrieved exemplars); systems without "
        "exemplars have none. Alignment: share of retrieved exemplars with the query's ED emotion / polarity group; "
        f"random retrieval gives {ra.get('emotion', float('nan')):.3f} / {ra.get('polarity', float('nan')):.3f}.",
        "Resolution: the binomial standard error of an Acc_emo share p over n test examples is sqrt(p(1 − p)/n) = "
        + ", ".join(f"{math.sqrt(p * (1 - p) / max(m['test_examples'], 1)):.3f} at p = {p}" for p in (0.1, 0.3, 0.5))
        + f" (n = {m['test_examples']}); the alignment shares pool K exemplars per query (correlated within a query, "
        "so their error is between that and sqrt(K) times smaller).",
        "retriever train s = stage-2 wall seconds (pool + G1 decodes + distillation); the joint stage's seconds "
        "(G2 + retriever together) are in the JSON (`joint_stage_s`). Latency: one query at a time, median, incl. "
        "query attributes (reg mode) — p90 and batched per-query times in the JSON.",
        f"Machine load: load average {m['started']['load_avg']} at the start, {m['ended']['load_avg']} at the end; "
        f"other jobs at the start: {'; '.join(m['started']['other_jobs'][:4])}. Total {m['total_minutes']} min"
        f"{'' if m['complete'] else ' so far (INCOMPLETE: not every system finished)'}.",
    ]
    write_results("reg-cpu-quick" if quick else "reg-cpu", payload, rows,
                  "REG on SmolLM2-135M-Instruct (CPU): zero-shot vs SFT vs semantic retrieval vs REG and ablations",
                  notes)


if __name__ == "__main__":
    main()
