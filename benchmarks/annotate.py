"""ReflectDiffu's multi-task data (issue 15): annotation time, ERA's held-out scores, annotator agreement.

    .venv/bin/python benchmarks/annotate.py [--agreement 150] [--intent-sample 500] [--era PATH] [--llm key=value …]
        [--llm-sample 40] [--reuse-timings]

Measures, on this machine:
- the offline annotation time of all of ED: the lexicon tagger on every speaker turn (timed in full) and the
  EmpatheticIntents classifier on a seeded sample of listener turns (throughput → the time for all listener turns),
  plus the annotation runs recorded in the annotated file's sidecar;
- ERA's held-out token / span P/R/F1 against its training annotator (``metrics.json`` of the trained ERA) and its
  tagging speed;
- the agreement report on a fixed sample of ED test dialogues (``empathkit.annotate.agreement``);
- how many of the derived top-3 intents per emotion agree with the paper's Table 1;
- with ``--llm``: the LLM rows of the agreement (on the first ``--llm-sample`` turns of the sample), its prompt
  versions, the endpoint's model and its rejected replies by reason (``--llm cache=FILE`` replays the replies of an
  earlier run instead of asking again: the same tags, the timing is the earlier run's);
- the runs of ``empathkit annotate --annotator era`` recorded in ``ed-era.jsonl``'s sidecar, extrapolated to all of ED.
``--reuse-timings`` keeps the lexicon / intent-classifier timings of the previous results file (with its date)
instead of measuring them again (~5 min on a busy machine).
Writes ``benchmarks/results/annotate.{json,md}``. The load average is recorded: this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results


def lexicon_all_ed() -> dict:
    from empathkit.annotate.base import words
    from empathkit.annotate.lexicon import LexiconTagger
    from empathkit.data import load_dialogues

    t0 = time.perf_counter()
    ds = [d for sp in ("train", "valid", "test") for d in load_dialogues("ed", sp)]
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    tagger = LexiconTagger()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    turns = tokens = em = 0
    for d in ds:
        for t in d.turns:
            if t.role == "speaker":
                toks = words(t.text)
                tags = tagger.tag_tokens(toks)
                turns += 1
                tokens += len(toks)
                em += tags.count("<em>")
    tag_s = time.perf_counter() - t0
    listener = sum(1 for d in ds for t in d.turns if t.role == "listener")
    return {"dialogues": len(ds), "speaker_turns": turns, "listener_turns": listener, "tokens": tokens,
            "em_rate": em / max(1, tokens), "read_seconds": round(read_s, 1), "lexicon_load_seconds": round(load_s, 1),
            "tag_seconds": round(tag_s, 1)}, ds


def intent_rate(ds, n: int, seed: int = 0) -> dict:
    from empathkit.annotate.intents import ClassifierIntents

    texts = [t.text for d in ds for t in d.turns if t.role == "listener"]
    sample = random.Random(seed).sample(texts, min(n, len(texts)))
    t0 = time.perf_counter()
    clf = ClassifierIntents()
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf.label(sample)
    s = time.perf_counter() - t0
    return {"sample": len(sample), "seconds": round(s, 1), "turns_per_second": len(sample) / s,
            "load_seconds": round(load_s, 1), "all_listener_turns_minutes": len(texts) / (len(sample) / s) / 60}


def era_scores(era_dir: Path, ds) -> dict:
    from empathkit.annotate.base import words
    from empathkit.annotate.era import load_era

    p = era_dir / "metrics.json"
    if not p.is_file():
        return {"note": f"no trained ERA at {era_dir}"}
    m = json.loads(p.read_text())
    era = load_era(era_dir)
    turns = [words(t.text) for d in ds if d.split == "test" for t in d.turns if t.role == "speaker"]
    turns = [t for t in random.Random(0).sample(turns, 300) if t]
    t0 = time.perf_counter()
    era.tag(turns, batch_size=32)
    s = time.perf_counter() - t0
    same = era_dir / "previous_on_same_test.json"  # the previous ERA scored on this run's test turns, if measured
    return {"teacher": m["teacher"], "sizes": m["sizes"], "steps": m["steps"], "stopped": m["stopped"],
            "train_seconds": m["train_seconds"], "train_cpu_seconds": m.get("train_cpu_seconds"),
            "torch_threads": m.get("torch_threads"), "load_average": m.get("load_average"),
            "best_valid_token_f1": m["best_valid_token_f1"], "history": m.get("history"),
            "test_token": m["test"]["token"], "test_span": m["test"]["span"],
            "previous": m.get("previous"),
            "previous_on_same_test": json.loads(same.read_text()) if same.is_file() else None,
            "tag_turns_per_second": len(turns) / s}


def era_annotation_runs(speaker_turns: int, dialogues: int, tag_rate: float | None) -> dict:
    """``empathkit annotate --annotator era`` runs (sidecar of ed-era.jsonl) and the time for all of ED."""
    from empathkit.annotate.store import default_annotated_path, read_meta

    path = default_annotated_path("era")
    meta = read_meta(path) if path.with_name(path.name + ".meta.json").is_file() else {}
    runs = meta.get("runs", [])
    out: dict = {"path": str(path), "runs": runs}
    done = sum(r["counts"]["dialogues_written"] for r in runs)
    secs = sum(r["seconds"] for r in runs)
    if done:
        out |= {"dialogues": done, "seconds": secs, "dialogues_per_second": done / secs,
                "all_ed_minutes_estimate": dialogues / (done / secs) / 60}
    if tag_rate:  # ERA's reason tags alone (the intent classifier is the rest of the pipeline's time)
        out["era_tags_all_speaker_turns_minutes_estimate"] = speaker_turns / tag_rate / 60
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agreement", type=int, default=150, help="ED test dialogues in the agreement sample")
    ap.add_argument("--intent-sample", type=int, default=500)
    ap.add_argument("--era", default=None)
    ap.add_argument("--llm", nargs="*", default=None, help="key=value settings of an OpenAI-compatible endpoint")
    ap.add_argument("--llm-sample", type=int, default=None, help="LLM: the first N speaker / listener turns only")
    ap.add_argument("--reuse-timings", action="store_true", help="keep the previous lexicon / classifier timings")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)

    from empathkit.annotate.agreement import agreement_report
    from empathkit.annotate.era import default_era_path
    from empathkit.annotate.intents import compare_with_paper, derived_map_path, intent_map
    from empathkit.annotate.store import default_annotated_path, read_meta
    from empathkit.config import apply_overrides

    load_start = os.getloadavg()
    prev_path = Path(__file__).resolve().parent / "results" / "annotate.json"
    if a.reuse_timings and prev_path.is_file():
        from empathkit.data import load_dialogues

        prev = json.loads(prev_path.read_text())
        lex = prev["lexicon_all_ed"] | {"measured": prev.get("lexicon_all_ed", {}).get("measured", prev["date"])}
        intents = prev["intent_classifier"] | {"measured": prev.get("intent_classifier", {}).get("measured",
                                                                                                prev["date"])}
        ds = [d for sp in ("train", "valid", "test") for d in load_dialogues("ed", sp)]
    else:
        lex, ds = lexicon_all_ed()
        intents = intent_rate(ds, a.intent_sample)
    era = era_scores(Path(a.era) if a.era else default_era_path(), ds)
    era_runs = era_annotation_runs(lex["speaker_turns"], lex["dialogues"], era.get("tag_turns_per_second"))
    agree = agreement_report(a.agreement, llm_config=apply_overrides({}, a.llm) if a.llm else None, era_path=a.era,
                             llm_sample=a.llm_sample)
    annotated = default_annotated_path("lexicon")
    meta = read_meta(annotated)
    mp = derived_map_path(annotated)
    vs_paper = compare_with_paper(intent_map(mp)) if mp.is_file() else {"note": "no derived map yet"}
    if mp.is_file():  # Table 1 never lists questioning, ED's most frequent listener intent
        vs_paper["without_questioning"] = compare_with_paper(intent_map(mp, exclude=("questioning",)))
    load_end = os.getloadavg()
    full_min = (lex["read_seconds"] + lex["tag_seconds"]) / 60 + intents["all_listener_turns_minutes"]
    payload = {"torch_threads": a.threads, "load_average": {"start": load_start, "end": load_end}, "lexicon_all_ed": lex,
               "intent_classifier": intents, "offline_all_ed_minutes_estimate": full_min,
               "annotated_file": {"path": str(annotated), "dialogues": meta.get("dialogues"),
                                  "runs": meta.get("runs", []), "counts": meta.get("counts")},
               "era": era, "era_annotation": era_runs, "agreement": agree, "intent_map_vs_paper": vs_paper}
    rows = [{"measure": "lexicon tags, all ED speaker turns (s)", "value": lex["tag_seconds"]},
            {"measure": "intent classifier (listener turns / s)", "value": intents["turns_per_second"]},
            {"measure": "offline annotation of all ED, estimate (min)", "value": full_min}]
    if "test_token" in era:
        rows += [{"measure": "ERA held-out token F1 vs teacher", "value": era["test_token"]["f1"]},
                 {"measure": "ERA held-out token precision", "value": era["test_token"]["precision"]},
                 {"measure": "ERA held-out token recall", "value": era["test_token"]["recall"]},
                 {"measure": "ERA held-out span F1 vs teacher", "value": era["test_span"]["f1"]},
                 {"measure": "ERA tagging (turns / s)", "value": era["tag_turns_per_second"]}]
        if era.get("previous"):
            p = era["previous"]
            rows += [{"measure": f"ERA before ({p['sizes']['train']} train turns, {p['steps']} steps): held-out "
                                 f"token F1 ({p['sizes']['test']} test turns)", "value": p["test_token"]["f1"]},
                     {"measure": "ERA before: held-out span F1", "value": p["test_span"]["f1"]}]
        if era.get("previous_on_same_test"):
            q = era["previous_on_same_test"]
            rows += [{"measure": f"ERA before, on this run's {q['turns']} test turns: token F1",
                      "value": q["token"]["f1"]},
                     {"measure": "ERA before, on this run's test turns: span F1", "value": q["span"]["f1"]}]
    if "all_ed_minutes_estimate" in era_runs:
        rows += [{"measure": f"empathkit annotate --annotator era ({era_runs['dialogues']} dialogues, s)",
                  "value": era_runs["seconds"]},
                 {"measure": "annotate all ED with ERA + intent classifier, estimate (min)",
                  "value": era_runs["all_ed_minutes_estimate"]}]
    if "era_tags_all_speaker_turns_minutes_estimate" in era_runs:
        rows += [{"measure": "ERA tags alone, all ED speaker turns, estimate (min)",
                  "value": era_runs["era_tags_all_speaker_turns_minutes_estimate"]}]
    rows += [{"measure": k, "value": float(v)} for k, v in agree["summary"].items()]
    if "mean_overlap" in vs_paper:
        rows += [{"measure": "derived top-3 ∩ Table 1 (mean share)", "value": vs_paper["mean_overlap"]},
                 {"measure": "emotions with the same top-3 set as Table 1", "value": vs_paper["same_set"]},
                 {"measure": "derived top-3 without questioning ∩ Table 1 (mean share)",
                  "value": vs_paper["without_questioning"]["mean_overlap"]},
                 {"measure": "emotions with the same top-3 set, questioning left out",
                  "value": vs_paper["without_questioning"]["same_set"]}]
    notes = [f"load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (2 cores, shared): "
             "throughputs are several times below an idle machine",
             f"ERA: teacher {era.get('teacher', '-')}, sizes {era.get('sizes', '-')}, {era.get('steps', '-')} steps, "
             f"{era.get('stopped', '')}; {era.get('train_seconds', '-')} s wall / {era.get('train_cpu_seconds', '-')} s "
             f"CPU at {era.get('torch_threads', '-')} torch thread(s), load average "
             f"{_fmt_load(era.get('load_average'))} during training",
             f"agreement sample: {agree['sample']}", *agree["notes"], *_llm_notes(agree.get("llm")),
             f"intent map derived from {meta.get('dialogues')} annotated dialogues (train split) of {annotated.name}"]
    if a.reuse_timings:
        notes.append(f"lexicon / intent-classifier timings reused from the run of {lex.get('measured')}")
    print(write_results("annotate", payload, rows, "ReflectDiffu multi-task data: annotation, ERA, agreement", notes))


def _fmt_load(la) -> str:
    return f"{la['start'][0]:.1f} → {la['end'][0]:.1f}" if la else "-"


def _llm_notes(llm) -> list[str]:
    if not llm:
        return []
    models = llm["endpoint_models"]
    ids = [m.get("id") for m in models.get("data", [])] if isinstance(models, dict) else models
    info = [m.get("empathkit") for m in models.get("data", [])] if isinstance(models, dict) else None
    return [f"LLM: endpoint {llm['config']['base_url']} model {ids} {info or ''}, prompts {llm['prompt_versions']}, "
            f"temperature 0, retries {llm['config']['retries']}, max_tokens {llm['config']['max_tokens']}; sample "
            f"{llm['sample']}; {llm['requests']} requests now, {llm.get('cached', 0)} replies replayed from the cache",
            f"LLM rejected turns: reason tags {llm['rejected_turns']['tags']}, intents "
            f"{llm['rejected_turns']['intents']}; failed replies by reason {llm['rejected_replies']} — rejected turns "
            "are left out of the LLM rows, which therefore score only the turns it annotated"]


if __name__ == "__main__":
    main()
