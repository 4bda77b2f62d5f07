"""REG stage 2 in isolation (CPU): which Eq. 4 reading (``kl-paper`` vs ``kl-fid``), which target temperature τ and
which augmentation probability k train the better query encoder — on the same queries, the same G1 decodes.

One set of G1 decodes (a trained G1 of ``benchmarks/reg_cpu.py``, e.g. its ``reg`` run, whose stage-2 decodes can seed
the cache: ``--decodes-from``) is made once and cached on disk (``reg/decodes.py``); every configuration then only trains the query encoder (seconds), so the grid is cheap:

- queries: the first ``--train-queries`` ED-train rows (as stage 2 uses them) train the encoder; the next
  ``--heldout`` rows are held out; each has a fixed pool of M = ``--pool`` candidates from the initial retriever
  (reg mode, own conversation excluded) and G1 decodes for all of them (augmented candidates are decoded as needed).
- held-out measures (no new decoding): the utility F (REG's ROUGE-L + BLEU + F1) of the candidate the trained encoder
  ranks first among the cached pool (``top1_F``; the untrained encoder, the pool's own reg-mode order, random = the
  pool mean and the oracle = the pool max as references), and the mean per-query Spearman correlation between the
  encoder's scores and F.
- alignment (no decoding at all): the trained encoder retrieves top-K from the whole index (reg mode) for
  ``--align-queries`` ED-valid contexts; share of exemplars with the query's ED emotion / polarity group.
- noise: k = 0 configurations are trained with several seeds (data order); every held-out number also carries the
  standard error over queries.

    nice -n 5 .venv/bin/python benchmarks/reg_cpu_distill.py --g1 /work/cache/reg-bench-s8/reg \\
        --index /work/cache/reg-index-full-quick --out /work/cache/reg-distill-s8 \\
        --decodes-from /work/cache/reg-bench-s8/reg/retriever/decodes --train-queries 16 --pool 4
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def spearman(a, b) -> float | None:
    from scipy.stats import spearmanr

    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def mean_se(xs) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--g1", type=Path, required=True, help="a trained REG G1 run directory (attribute tags)")
    ap.add_argument("--index", type=Path, default=Path("/work/cache/reg-index-full"))
    ap.add_argument("--out", type=Path, default=Path("/work/cache/reg-distill"))
    ap.add_argument("--train-queries", type=int, default=48)
    ap.add_argument("--heldout", type=int, default=24)
    ap.add_argument("--pool", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--align-queries", type=int, default=300)
    ap.add_argument("--k-align", type=int, default=3)
    ap.add_argument("--taus", default="0.05,0.1,0.3")
    ap.add_argument("--ks", default="0.1,0.25", help="augmentation probabilities tried besides 0 (at τ = 0.1)")
    ap.add_argument("--decodes-from", type=Path, default=None,
                    help="a stage-2 decodes/ folder of the same G1 run to start the cache from (e.g. RUN/retriever/decodes)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the k = 0 configurations")
    args = ap.parse_args()

    import numpy as np
    import torch

    from empathkit.data.emotions import polarity
    from empathkit.methods.reg.analysis import alignment
    from empathkit.methods.reg.config import REGModelConfig
    from empathkit.methods.reg.distill import similarity_scores
    from empathkit.methods.reg.index import ExemplarIndex
    from empathkit.methods.reg.retriever import Distiller, QueryEncoder, RetrieverTrainConfig, candidate_pools
    from empathkit.methods.reg.train import load_g1, query_attributes, with_attributes
    from empathkit.runconfig import examples_for, resolve
    from empathkit.runs import load_run_config

    t_start = time.time()
    log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {m}", flush=True)  # noqa: E731
    rc = resolve(load_run_config(args.g1))
    mc = REGModelConfig(**rc.model)
    index = ExemplarIndex.load(args.index)
    n = args.train_queries + args.heldout
    rows = examples_for(rc, "train")[:n]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} training rows in {args.g1}'s data selection; need {n}")
    queries = with_attributes(rows, query_attributes(rows, index.tagger, progress=False))
    train_ids, held_ids = list(range(args.train_queries)), list(range(args.train_queries, n))
    enc0 = QueryEncoder.from_encoder(index.config["encoder"])
    queries, pools, mode = candidate_pools(index, queries, enc0, args.pool, "reg")
    if len(queries) != n:
        raise SystemExit(f"{n - len(queries)} queries got no candidate")
    g1 = load_g1(args.g1, mc, index.tagger)

    def cfg(loss="kl-fid", tau=0.1, k=0.0, seed=0) -> RetrieverTrainConfig:
        return RetrieverTrainConfig(pool=args.pool, epochs=args.epochs, lr=args.lr, batch_size=8, seed=seed,
                                    decode_batch_size=16, max_new_tokens=args.decode_tokens,
                                    distill={"loss": loss, "tau": tau, "tau_r": 0.1, "k": k})

    base = Distiller(index, g1, queries, pools, cfg(), args.out, mode)
    t0 = time.time()
    if args.decodes_from:  # stage 2's cache of the same G1 / settings / pool (same file name = same cache key)
        import shutil

        src = Path(args.decodes_from) / base.cache.path.name
        if src.is_file() and len(base.cache) == 0:
            shutil.copyfile(src, base.cache.path)
            base = Distiller(index, g1, queries, pools, cfg(), args.out, mode)
            log(f"reused {len(base.cache)} G1 decodes from {src}")
    new = base.fill(pools, progress=False)
    log(f"pool decodes: {new} new in {time.time() - t0:.0f}s ({len(base.cache)} cached)")
    t_decode = time.time() - t0
    F_held = base.utilities(held_ids, [pools[i] for i in held_ids])  # (H, M)
    emb_held = base.vectors[torch.tensor([[base.row_of[e] for e in pools[i]] for i in held_ids])]
    held_ctx = [base.contexts[i] for i in held_ids]
    valid = examples_for(rc, "valid", args.align_queries)
    valid = with_attributes(valid, query_attributes(valid, index.tagger, progress=False))
    vctx = [[t.text for t in ex.context] for ex in valid]
    vattr = [dict(ex.annotations.attributes) for ex in valid]

    def evaluate(qenc, name) -> dict:
        qenc.eval()
        S = similarity_scores(qenc.encode(held_ctx, batch_size=32), emb_held)  # (H, M)
        top = S.argmax(dim=-1)
        top1 = [float(F_held[r, top[r]]) for r in range(len(held_ids))]
        rho = [spearman(S[r].tolist(), F_held[r].tolist()) for r in range(len(held_ids))]
        got = index.search(vctx, k=args.k_align, mode="reg", query_attributes=vattr, query_encoder=qenc)
        al = alignment(got, [ex.emotion for ex in valid])
        m1, s1 = mean_se(top1)
        mr, sr = mean_se(rho)
        return {"name": name, "top1_F": m1, "top1_F_se": s1, "spearman": mr, "spearman_se": sr,
                "align_emotion": al.get("emotion"), "align_polarity": al.get("polarity"), "top1_F_rows": top1}

    refs = {"oracle (pool max)": [float(F_held[r].max()) for r in range(len(held_ids))],
            "random (pool mean)": [float(F_held[r].mean()) for r in range(len(held_ids))],
            "pool order (reg mode, untrained)": [float(F_held[r, 0]) for r in range(len(held_ids))]}
    results = {"references": {k: dict(zip(("mean", "se"), mean_se(v))) for k, v in refs.items()}}
    results["untrained encoder"] = evaluate(enc0, "untrained")
    log(f"untrained: {results['untrained encoder']['top1_F']:.4f}")

    grid = [(loss, tau, 0.0, s) for loss in ("kl-paper", "kl-fid") for tau in map(float, args.taus.split(","))
            for s in range(args.seeds)]
    grid += [(loss, 0.1, float(k), 0) for loss in ("kl-paper", "kl-fid") for k in args.ks.split(",")]
    runs = []
    for loss, tau, k, seed in grid:
        c = cfg(loss, tau, k, seed)
        d = Distiller(index, g1, queries, pools, c, args.out, mode)
        torch.manual_seed(seed)
        qenc = QueryEncoder.from_encoder(enc0)
        opt = torch.optim.AdamW([p for p in qenc.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
        order_rng = np.random.default_rng(seed)
        t0 = time.time()
        losses, decoded = [], 0
        for _ in range(args.epochs):
            cands = [list(p) for p in pools]  # Eq. 5 on the training queries only (held out: the pool as is), so
            for i in train_ids:                # the draws equal stage 2's on the same queries (cached decodes)
                cands[i] = [e.id for e in d.augmenter([d.by_id[e] for e in pools[i]], queries[i].dialogue_id)[0]]
            decoded += d.fill(cands, progress=False)
            qenc.train()
            order = list(order_rng.permutation(train_ids))
            for b in range(0, len(order), 8):
                loss_v, _, _ = d.loss(qenc, [int(i) for i in order[b:b + 8]], cands)
                opt.zero_grad()
                loss_v.backward()
                opt.step()
                losses.append(float(loss_v.detach()))
        r = evaluate(qenc, f"{loss} tau={tau} k={k} seed={seed}")
        r.update(loss=loss, tau=tau, k=k, seed=seed, train_s=round(time.time() - t0, 1), new_decodes=decoded,
                 first_loss=losses[0], last_loss=losses[-1])
        runs.append(r)
        log(f"{r['name']}: top1_F {r['top1_F']:.4f} rho {r['spearman']:.3f} align {r['align_emotion']:.3f}"
            f"/{r['align_polarity']:.3f} ({r['train_s']}s, {decoded} new decodes)")
    results["runs"] = runs

    # paired comparison kl-fid − kl-paper per τ (k = 0), averaged over seeds, per held-out query
    pairs = {}
    for tau in map(float, args.taus.split(",")):
        per = {loss: np.mean([r["top1_F_rows"] for r in runs if r["loss"] == loss and r["tau"] == tau
                              and r["k"] == 0.0], axis=0) for loss in ("kl-paper", "kl-fid")}
        diff = per["kl-fid"] - per["kl-paper"]
        pairs[str(tau)] = {"mean": float(diff.mean()), "se": float(diff.std(ddof=1) / math.sqrt(len(diff)))}
    results["paired_fid_minus_paper"] = pairs
    meta = {"g1": str(args.g1), "index": str(args.index), "corpus_size": len(index), "train_queries":
            len(train_ids), "heldout": len(held_ids), "pool": args.pool, "epochs": args.epochs, "lr": args.lr,
            "decode_tokens": args.decode_tokens, "align_queries": len(valid), "k_align": args.k_align,
            "tau_r": 0.1, "decode_seconds": round(t_decode, 1), "total_minutes": round((time.time() - t_start) / 60, 1),
            "polarity_groups": sorted({polarity(ex.emotion) for ex in valid})}
    write(meta, results)
    log("done")


def write(meta: dict, results: dict) -> None:
    from benchmarks._common import write_results

    agg: dict = {}
    for r in results["runs"]:
        agg.setdefault((r["loss"], r["tau"], r["k"]), []).append(r)
    rows = []
    for name, v in results["references"].items():
        rows.append({"configuration": name, "seeds": "–", "top1 F": round(v["mean"], 4),
                     "± se (queries)": round(v["se"], 4), "Spearman(S, F)": "–", "aligned emo": "–",
                     "aligned pol": "–"})
    u = results["untrained encoder"]
    rows.append({"configuration": "untrained encoder (cosine)", "seeds": "–", "top1 F": round(u["top1_F"], 4),
                 "± se (queries)": round(u["top1_F_se"], 4), "Spearman(S, F)": round(u["spearman"], 3),
                 "aligned emo": round(u["align_emotion"], 3), "aligned pol": round(u["align_polarity"], 3)})
    for (loss, tau, k), rs in agg.items():
        rows.append({"configuration": f"{loss}, τ={tau}, k={k}", "seeds": len(rs),
                     "top1 F": round(statistics.fmean(r["top1_F"] for r in rs), 4),
                     "± se (queries)": round(statistics.fmean(r["top1_F_se"] for r in rs), 4),
                     "Spearman(S, F)": round(statistics.fmean(r["spearman"] for r in rs), 3),
                     "aligned emo": round(statistics.fmean(r["align_emotion"] for r in rs), 3),
                     "aligned pol": round(statistics.fmean(r["align_polarity"] for r in rs), 3)})
    p = results["paired_fid_minus_paper"]
    notes = [f"G1 {meta['g1']}; corpus {meta['corpus_size']} ED-train exemplars; {meta['train_queries']} training "
             f"queries, {meta['heldout']} held-out, M = {meta['pool']} candidates each, {meta['epochs']} epochs, lr "
             f"{meta['lr']}, batch 8, τ_r = {meta['tau_r']}; G1 decodes of {meta['decode_tokens']} tokens "
             f"({meta['decode_seconds']} s to decode the pools); alignment over {meta['align_queries']} ED-valid "
             f"contexts, top-{meta['k_align']} from the whole index (reg mode).",
             "top1 F: REG's utility (ROUGE-L + BLEU + F1) of the held-out query's candidate ranked first by the "
             "encoder, among its cached pool; ± = standard error over held-out queries.",
             "Paired kl-fid − kl-paper in top1 F (same queries, seeds averaged): " + "; ".join(
                 f"τ={t}: {v['mean']:+.4f} ± {v['se']:.4f}" for t, v in p.items()) + ".",
             f"Total {meta['total_minutes']} min."]
    write_results("reg-cpu-distill", {"meta": meta, **results}, rows,
                  "REG stage 2 on CPU: kl-paper vs kl-fid, τ and k (retriever only, cached G1 decodes)", notes)


if __name__ == "__main__":
    main()
