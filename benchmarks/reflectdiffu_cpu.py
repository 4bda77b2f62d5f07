"""ReflectDiffu on this CPU: the full model vs its four Table 2 ablations vs the plain multi-task transformer, on one
emotion-stratified ED subset, several seeds, Table 2's metrics through empathkit's evaluation suite.

    .venv/bin/python benchmarks/reflectdiffu_cpu.py --train 600 --valid 48 --test 100 --steps 200 --seeds 0 \
        --bartscore-n 32 --out /tmp/rd-s0          # and --seeds 1 --out /tmp/rd-s1 in a second process, then
    .venv/bin/python benchmarks/reflectdiffu_cpu.py --merge /tmp/rd-s0.json /tmp/rd-s1.json   # (the committed run)

Training: Adam + Noam (peak ``--lr``, warmup ``--warmup-ratio`` of the steps), or ``--schedule constant``.
Decoding: greedy twice — *plain* (no guards: loop rate, BLEU, Dist only) and *guarded* (``--no-repeat-ngram`` and
``--repetition-penalty``, the documented decoding choice; all of Table 2's metrics). After each model the checks of
``empathkit.methods.reflectdiffu.diagnostics`` on the test set (L_res vs the responses' unigram cross-entropy,
teacher-forced accuracy / distinct argmax tokens / p_gen, the causal-mask leak) are stored with its row.

Data: ED (every-listener, max_history 3), annotated in memory (nothing written to the repo): reason tags on the
speaker turns by rdata's lexicon tagger (``empathkit.annotate.lexicon``), the response intent by empathkit's intent
classifier (``ClassifierIntents``). Reason states h~: the trained ERA when one is in the cache, else an ERA with
MiniLM's pretrained encoder and an *untrained* composition head (stated in the results). p_intent: the intent
classifier on the last user turn. Metrics (preset ``reflectdiffu``): BLEU-1..4 (``bleu-moses``: Moses multi-bleu
-lc, ×100), BARTScore (causal variant on SmolLM2, a seeded ``--bartscore-n`` subset), Acc_emo (model prediction vs
gold), Acc_intent (suite: classifier on the response vs the EmpatheticIntents label; ``acc-intent-model``: the
model's final intent vs the annotated response intent), PPL (the model's own ``score``, per word token), Dist-1/2
(corpus). Writes ``benchmarks/results/reflectdiffu-cpu.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

VARIANTS = {
    "ReflectDiffu": {},
    "w/o ERA": {"use_era": False},
    "w/o C-Experts": {"use_c_experts": False},
    "w/o Intent twice": {"use_intent_twice": False},
    "w/o EMU": {"use_emu": False},
    "multi-task transformer": {"use_era": False, "use_c_experts": False, "use_intent_twice": False, "use_emu": False},
}
MODEL = {"emb_dim": 96, "heads": 4, "enc_layers": 2, "dec_layers": 2, "ff_dim": 192, "dropout": 0.1,
         "vocab_size": 6000, "max_context_tokens": 96, "max_target_tokens": 24, "diffusion_steps": 20,
         "denoiser_hidden": 192, "policy_hidden": 96}


def annotate(examples, tagger, intents):
    """Examples whose target carries the classifier's intent and, when ``tagger`` is given, whose speaker turns
    carry its reason tags (``tagger=None``: the model's reason source — the ERA — tags them)."""
    from empathkit.annotate.base import words
    from empathkit.types import ExampleAnnotations, TurnAnnotation

    cache: dict[str, TurnAnnotation] = {}
    texts = sorted({t.text for ex in examples for t in ex.context if t.role == "speaker"}) if tagger else []
    toks = [[w.lower() for w in words(t)] for t in texts]
    for t, ws, tags in zip(texts, toks, tagger.tag(toks) if texts else []):
        cache[t] = TurnAnnotation(tokens=tuple(ws), reason_tags=tuple(tags), annotator=tagger.annotator)
    labels = intents.label([ex.target for ex in examples])
    out = []
    for ex, lab in zip(examples, labels):
        ctx = tuple(dataclasses.replace(t, annotation=cache.get(t.text)) if t.role == "speaker" else t
                    for t in ex.context)
        ann = ExampleAnnotations(target=TurnAnnotation(intent=lab, annotator=intents.annotator))
        out.append(dataclasses.replace(ex, context=ctx, annotations=ann))
    return out


def reason_source():
    from empathkit.annotate.era import default_era_path, load_era
    from empathkit.annotate.era.model import ERA
    from empathkit.errors import ResourceMissing

    p = Path(default_era_path())
    note = None
    if (p / "config.json").is_file() and (p / "head.safetensors").is_file():  # read before loading: another job
        cfg = json.loads((p / "config.json").read_text())                    # may rewrite the folder later
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((p / "head.safetensors").stat().st_mtime))
        ex = cfg.get("extra", {})
        note = (f"trained ERA v{cfg.get('version')} ({p}, head written {when}; teacher {ex.get('teacher')}, "
                f"held-out token F1 {ex.get('test_token_f1', float('nan')):.3f} against that teacher)")
    try:
        return load_era(), note or "trained ERA"
    except ResourceMissing:
        return ERA.new("minilm-l6").eval(), "ERA with MiniLM encoder, untrained composition head (no trained ERA)"


class CachedReasons:
    """The reason source with h~ and tags memoised per word list (every variant and seed sees the same turns)."""

    def __init__(self, src):
        self.src, self.dim = src, src.dim
        self._h: dict = {}
        self._tags: dict = {}

    def tag(self, words):
        todo = [w for w in dict.fromkeys(tuple(x) for x in words) if w not in self._tags]
        if todo:
            self._tags.update(zip(todo, self.src.tag([list(w) for w in todo])))
        return [self._tags[tuple(w)] for w in words]

    def reason_states(self, words):
        import torch

        todo = [w for w in dict.fromkeys(tuple(x) for x in words) if w not in self._h]
        if todo:
            h, m = self.src.reason_states([list(w) for w in todo])
            for i, w in enumerate(todo):
                self._h[w] = (h[i, :len(w)].clone(), m[i, :len(w)].clone())
        W = max([len(w) for w in words] + [1])
        out, mask = torch.zeros(len(words), W, self.dim), torch.zeros(len(words), W, dtype=torch.bool)
        for i, w in enumerate(words):
            h, m = self._h[tuple(w)]
            out[i, :len(w)], mask[i, :len(w)] = h, m
        return out, mask


def mean_sd(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return None, None
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--valid", type=int, default=96)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--bartscore-n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tags", choices=("era", "lexicon"), default="era",
                    help="reason tags of the speaker turns: the ERA's CRF (paper) or rdata's lexicon annotator")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-metric", choices=("loss", "L_res"), default="L_res",
                    help="validation number for early stopping / the best model (train.eval_metric)")
    ap.add_argument("--patience", type=int, default=2, help="early-stopping patience in evaluations (0: off)")
    ap.add_argument("--schedule", choices=("noam", "constant"), default="noam")
    ap.add_argument("--warmup-ratio", type=float, default=0.2)
    ap.add_argument("--no-repeat-ngram", type=int, default=2)
    ap.add_argument("--repetition-penalty", type=float, default=1.2)
    ap.add_argument("--work", default="/tmp/reflectdiffu-bench")
    ap.add_argument("--out", default="benchmarks/results/reflectdiffu-cpu")
    ap.add_argument("--merge", nargs="+", help="combine the runs of these result JSON files (same settings, e.g. one "
                                               "process per seed) into --out, and exit")
    a = ap.parse_args(argv)
    if a.merge:
        docs = [json.loads(Path(p).read_text()) for p in a.merge]
        runs = sorted((r for d in docs for r in d["runs"]), key=lambda r: (r["seed"], list(VARIANTS).index(r["variant"])))
        a.seeds = sorted({r["seed"] for r in runs})
        m0 = docs[0]["meta"]
        for k in ("train", "valid", "test", "steps", "batch", "threads", "lr", "schedule", "warmup_ratio", "tags",
                  "eval_metric", "patience",
                  "no_repeat_ngram", "repetition_penalty"):
            if k in m0:
                setattr(a, k, m0[k])
        a.bartscore_n = m0.get("bartscore_examples", a.bartscore_n)
        write(a, runs, docs[0]["meta"]["reasons"], sum(d["meta"]["wall_seconds"] for d in docs),
              [d["meta"].get("load") for d in docs])
        return 0

    import torch

    torch.set_num_threads(a.threads)
    from empathkit.annotate.intents import ClassifierIntents, intent_map
    from empathkit.annotate.lexicon import LexiconTagger
    from empathkit.classifiers import load_classifier
    from empathkit.data import load_examples
    from empathkit.evaluation.presets import resolve_metrics
    from empathkit.evaluation.readers import records_from_predictions
    from empathkit.evaluation.runner import evaluate_records
    from empathkit.methods.reflectdiffu import diagnostics
    from empathkit.methods.reflectdiffu.config import RDModelConfig
    from empathkit.methods.reflectdiffu.features import collate
    from empathkit.methods.reflectdiffu.generator import RDGenerator, load_model_dir
    from empathkit.methods.reflectdiffu.sources import ClassifierPrior
    from empathkit.methods.reflectdiffu.train import train_reflectdiffu
    from empathkit.models.generation import GenerationSettings

    t0 = time.time()
    data = {s: load_examples("ed", s, "every-listener", 3, n, 0, True)
            for s, n in (("train", a.train), ("valid", a.valid), ("test", a.test))}
    tagger, intents = (LexiconTagger() if a.tags == "lexicon" else None), ClassifierIntents()
    data = {s: annotate(v, tagger, intents) for s, v in data.items()}
    reasons, reasons_note = reason_source()
    reasons = CachedReasons(reasons)
    prior = ClassifierPrior(load_classifier("intent"))
    imap = intent_map("paper-table1", n=3)
    print(f"data + annotation {time.time() - t0:.0f}s; reasons: {reasons_note}", flush=True)
    settings = GenerationSettings(max_new_tokens=24, batch_size=32, repetition_penalty=1.0)
    guarded = settings.model_copy(update={"repetition_penalty": a.repetition_penalty})
    metrics = resolve_metrics(None, "reflectdiffu", {"bartscore": {"max_examples": a.bartscore_n}})
    cheap = resolve_metrics(["bleu-moses", "dist"])
    load: list[float] = []
    from empathkit.methods.reflectdiffu.vocab import word_tokens

    tgt_words = {s: [word_tokens(ex.target)[:MODEL["max_target_tokens"] - 1] for ex in v] for s, v in data.items()}
    h_uni = diagnostics.unigram_entropy(tgt_words["train"], tgt_words["test"], MODEL["vocab_size"])
    gold_intent = [ex.annotations.target.intent for ex in data["test"]]
    runs, done = [], resumable_rows(a)
    for seed in a.seeds:  # every variant at one seed before the next seed
        for name in a.variants:
            if (name, seed) in done:  # finished by an earlier call with the same settings (--out's JSON)
                runs.append(done[(name, seed)])
                print(f"{name} seed {seed}: reused from {a.out}.json", flush=True)
                continue
            mcfg = MODEL | VARIANTS[name] | {"reason_source": "era"}
            cfg = {"method": "reflectdiffu", "seed": seed, "model": mcfg,
                   "train": {"max_steps": a.steps, "batch_size": a.batch, "lr": a.lr, "schedule": a.schedule,
                             "warmup_ratio": a.warmup_ratio,
                             "eval_every": max(1, a.steps // 4), "early_stopping_patience": a.patience or None,
                             "eval_metric": a.eval_metric,
                             "save_every": a.steps, "log_every": 25}}
            rd = Path(a.work) / f"{name.replace('/', '').replace(' ', '-')}-s{seed}"
            t1 = time.time()
            train_reflectdiffu(cfg, rd, progress=False, train_examples=data["train"], valid_examples=data["valid"],
                               reasons=reasons, prior=prior, intent_map=imap)
            train_s = time.time() - t1
            mc = RDModelConfig(**mcfg)
            model, vocab, _ = load_model_dir(rd / "model", mc)
            gen = RDGenerator(model, vocab, mc, reasons, prior)
            load.append(os.getloadavg()[0])
            plain = gen.generate(data["test"], settings, progress=False)
            plain_res = evaluate_records(records_from_predictions(plain), cheap, name=name).aggregates
            gen.config = mc.model_copy(update={"no_repeat_ngram_size": a.no_repeat_ngram})
            t2 = time.time()
            preds = gen.generate(data["test"], guarded, progress=False)  # also stores ref_nll (the model's PPL)
            gen_s = time.time() - t2
            tb = collate(gen.features.example_items(data["test"][:64]), vocab, gen.era_dim)
            tf = diagnostics.teacher_forced(model, tb)
            leak_before, leak_after = diagnostics.causal_leak(model, tb)
            diag = {"unigram-xent": h_uni, **{f"tf-{k}": v for k, v in tf.items()},
                    "causal-leak": leak_before, "future-change": leak_after}
            acc_int = None
            if "intent" in preds[0].extra:
                pairs = [(p.extra["intent"], g) for p, g in zip(preds, gold_intent) if g]
                acc_int = sum(x == y for x, y in pairs) / max(len(pairs), 1)
            res = evaluate_records(records_from_predictions(preds), metrics, name=name)
            summary = json.loads((rd / "train_summary.json").read_text())
            row = {"variant": name, "seed": seed, "train_seconds": round(train_s, 1), "generate_seconds": round(gen_s, 1),
                   "steps": summary["steps"], "stopped_early": summary["stopped_early"],
                   "parameters": summary["parameters"], "acc-intent-model": acc_int,
                   "loop-rate-plain": diagnostics.loop_rate([p.prediction for p in plain]),
                   "loop-rate": diagnostics.loop_rate([p.prediction for p in preds]),
                   "bleu-moses-1-plain": plain_res.get("bleu-moses-1"), "dist-2-plain": plain_res.get("dist-2"),
                   **diag,
                   **{k: v for k, v in res.aggregates.items() if isinstance(v, (int, float))},
                   "samples": [p.prediction for p in preds[:3]], "samples-plain": [p.prediction for p in plain[:3]]}
            runs.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("samples")}), flush=True)
            print("samples:", row["samples-plain"], row["samples"], flush=True)  # the log only, not the results
            write(a, runs, reasons_note, time.time() - t0, load)
    write(a, runs, reasons_note, time.time() - t0, load)
    return 0


SETTINGS_KEYS = ("train", "valid", "test", "steps", "batch", "model", "bartscore_examples", "lr", "schedule",
                 "warmup_ratio", "tags", "eval_metric", "patience", "no_repeat_ngram", "repetition_penalty")


def resumable_rows(a) -> dict:
    """(variant, seed) → row of ``--out``'s JSON when it was written with these settings (an interrupted run goes
    on where it stopped); nothing when the file is absent or its settings differ."""
    p = Path(a.out).with_suffix(".json")
    if not p.is_file():
        return {}
    old = json.loads(p.read_text())
    mine = {"train": a.train, "valid": a.valid, "test": a.test, "steps": a.steps, "batch": a.batch, "model": MODEL,
            "bartscore_examples": a.bartscore_n, "lr": a.lr, "schedule": a.schedule, "warmup_ratio": a.warmup_ratio,
            "tags": a.tags, "eval_metric": a.eval_metric, "patience": a.patience, "no_repeat_ngram": a.no_repeat_ngram,
            "repetition_penalty": a.repetition_penalty}
    if any(old["meta"].get(k) != mine[k] for k in SETTINGS_KEYS):
        return {}
    return {(r["variant"], r["seed"]): r for r in old["runs"]}


def write(a, runs, reasons_note, seconds, load=None):
    import torch

    keys = [k for k in runs[0] if k not in ("variant", "seed", "stopped_early") and not k.startswith("samples")]
    agg = {}
    for name in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == name]
        agg[name] = {k: mean_sd([r.get(k) for r in rows if isinstance(r.get(k), (int, float))]) for k in keys}
    flat = [x for x in (load or []) if isinstance(x, (int, float))] + \
        [x for xs in (load or []) if isinstance(xs, list) for x in xs if isinstance(x, (int, float))]
    meta = {"train": a.train, "valid": a.valid, "test": a.test, "steps": a.steps, "batch": a.batch, "seeds": a.seeds,
            "model": MODEL, "reasons": reasons_note, "threads": a.threads, "cpu": platform.processor() or platform.machine(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "wall_seconds": round(seconds),
            "bartscore_examples": a.bartscore_n, "lr": a.lr, "schedule": a.schedule, "warmup_ratio": a.warmup_ratio,
            "tags": a.tags, "eval_metric": a.eval_metric, "patience": a.patience,
            "no_repeat_ngram": a.no_repeat_ngram, "repetition_penalty": a.repetition_penalty,
            "load": flat, "load_range": [min(flat), max(flat)] if flat else None}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # generated texts can copy context words verbatim (pointer-generator): they stay in the work dir, not the repo
    kept = [{k: v for k, v in r.items() if not k.startswith("samples")} for r in runs]
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "runs": kept, "aggregate": agg}, indent=1))
    cols = [("bleu-moses-1", "BLEU-1"), ("bleu-moses-2", "BLEU-2"), ("bleu-moses-3", "BLEU-3"),
            ("bleu-moses-4", "BLEU-4"),
            ("bartscore", "BARTScore"), ("acc-emo", "Acc_emo"), ("acc-intent", "Acc_intent (suite)"),
            ("acc-intent-model", "Acc_intent (model)"), ("ppl", "PPL"), ("dist-1", "Dist-1"), ("dist-2", "Dist-2"),
            ("train_seconds", "train s"), ("parameters", "params")]
    diag = [("tf-L_res", "L_res (test, teacher-forced)"), ("unigram-xent", "unigram xent"),
            ("tf-accuracy", "TF acc"), ("tf-distinct_argmax", "distinct TF argmax"), ("tf-p_gen_mean", "p_gen"),
            ("causal-leak", "causal leak"), ("loop-rate-plain", "loops (plain greedy)"),
            ("bleu-moses-1-plain", "BLEU-1 (plain)"), ("dist-2-plain", "Dist-2 (plain)"),
            ("loop-rate", "loops (guarded)")]
    lo = meta["load_range"]
    lines = ["# ReflectDiffu on CPU: full model, four ablations, multi-task transformer", "",
             (f"ED every-listener (max_history 3), emotion-stratified: {a.train} train / {a.valid} valid / {a.test} test "
              f"examples; {a.steps} steps × batch {a.batch}, Adam + {a.schedule} (peak lr {a.lr}, warmup "
              f"{a.warmup_ratio:.0%} of the steps); seeds {a.seeds} (mean ± SD); {a.threads} torch thread(s) per process; "
              f"CPU capability {meta['torch_cpu_capability']}; wall {meta['wall_seconds']} s; 1-min load average "
              f"{f'{lo[0]:.1f}-{lo[1]:.1f}' if lo else 'not recorded'} (2 shared cores). Reason states: {reasons_note}. "
              f"Reason tags: {'the ERA (CRF)' if a.tags == 'era' else 'lexicon annotator'}; response intents: empathkit "
              f"intent classifier. Model: {json.dumps(MODEL)}. BARTScore on {a.bartscore_n} seeded examples "
              f"(causal-LM variant). Table 2 columns: guarded greedy decoding (no-repeat {a.no_repeat_ngram}-gram, "
              f"repetition penalty {a.repetition_penalty}); PPL, Acc_emo and Acc_intent (model) do not depend on "
              "decoding."), "",
             "| model | " + " | ".join(c for _, c in cols) + " |", "|---|" + "---|" * len(cols)]

    def cell(m, k):
        mu, sd = m.get(k, (None, None))
        return "–" if mu is None else (f"{mu:.0f}" if k in ("parameters", "train_seconds", "tf-distinct_argmax")
                                       else f"{mu:.3g} ± {sd:.2g}")

    for name, m in agg.items():
        lines.append(f"| {name} | " + " | ".join(cell(m, k) for k, _ in cols) + " |")
    lines += ["", "## Loop diagnostics (`empathkit.methods.reflectdiffu.diagnostics`, first 64 test examples)", "",
              "| model | " + " | ".join(c for _, c in diag) + " |", "|---|" + "---|" * len(diag)]
    for name, m in agg.items():
        lines.append(f"| {name} | " + " | ".join(cell(m, k) for k, _ in diag) + " |")
    full = agg.get("ReflectDiffu")
    if full and len(a.seeds) > 1:
        lines += ["", "## Differences to the full model vs the seed spread", "",
                  "A difference is marked `>` when |Δ mean| exceeds the sum of the two seed SDs, else `~`.", "",
                  "| model | " + " | ".join(c for k, c in cols if k not in ("train_seconds", "parameters")) + " |",
                  "|---|" + "---|" * (len(cols) - 2)]
        for name, m in agg.items():
            if name == "ReflectDiffu":
                continue
            cells = []
            for k, _ in cols:
                if k in ("train_seconds", "parameters"):
                    continue
                (fm, fs), (vm, vs) = full.get(k, (None, None)), m.get(k, (None, None))
                cells.append("–" if fm is None or vm is None else
                             f"{(vm - fm) if abs(vm - fm) > 1e-12 else 0.0:+.3g} {'>' if abs(vm - fm) > fs + vs else '~'}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", ("Acc_emo is ×1 (fraction); BLEU ×100 (bleu-moses); PPL = exp(own NLL per word token, with EOS); "
                   "Dist ×100. `loops` = share of replies with a token three times in a row or a repeated trigram."),
              ("`train s` includes feature extraction (the first variant of a process also computes and caches the "
               "ERA states of every turn) and depends on the load of the shared CPU during each run; `wall` sums the "
               "processes' wall times when results of several processes (one per seed) were merged."),
              "", "Reading: docs/methods/reflectdiffu.md, section 'CPU benchmark'."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
