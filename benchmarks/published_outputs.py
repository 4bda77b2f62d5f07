"""Score published systems' released output files as they are, with their as-published presets, against the
numbers their authors printed.

The released files are NOT in this repository (licences; size): fetch them from the systems' repositories and
give the folder that holds them (``--released`` or ``$EMPATHKIT_RELEASED``), laid out as
``<owner>+<repo>/<path in the repository>``:

    HLTCHKUST+MoEL/generation_result.txt
    declare-lab+MIME/output.txt
    wangjs9+CARE-master/save/generated_results.txt
    qtli+KEMP/result/KEMP/KEMP.txt
    qtli+EmpDG/Predictions/{EmpDG,EmpDG_woD,EmpDG_woG,EmoPrepend,Transformer,MoEL}.txt
    MichiganNLP+empathy_eval/data/outputs/{cem,kemp,moel,mime,care,trs,human}_responses.json
    justtherightsize+empo/predictions/preds_*_epi.txt, data/generated_text/preds_x_zephyr-7b-sft-full122.full.txt
    justtherightsize+empo/data/empathy_datasets/empathetic_dialogues/ed_counts.pkl  (EmPO's DF table)
    justtherightsize+empo/data/misc/{VAD.json,intensity.txt}                       (EmPO's lexicons)

Every row: system, file, decode, preset, key, our number (full precision and at the printed number's digits),
the printed number and where it is printed. Missing files are listed and skipped.

    python benchmarks/published_outputs.py --released /work/released [--skip-tries]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

EMPO = "justtherightsize+empo/"
EMPO_FILES = {  # EmPO Tables 4 / 5 rows → released predictions
    "baseline": EMPO + "predictions/preds_dlrxxx_zephyr-7b-sft-full_epi.txt",
    "len-control baseline": EMPO + "predictions/preds_dlrxxx30x_zephyr-7b-sft-full_epi.txt",
    # Table 5's SFT row is the sft-full122 model (EmPO notebooks/compare_*.ipynb read *_sft-full122_*), whose
    # predictions are released under data/generated_text/; predictions/ holds the later sft-full124 model
    "SFT": EMPO + "data/generated_text/preds_x_zephyr-7b-sft-full122.full.txt",
    # Table 5's DPO row is sft-full122_d211 (same notebooks), not released; this is the released DPO model
    "SFT+DPO": EMPO + "predictions/preds_dlr1e6m1000_zephyr-7b-sft-full124_d270_epi.txt",
}
T5 = "EmPO paper Table 5"
T4 = "EmPO paper Table 4"
# printed numbers: (system, key) → value, from ../shared/papers/empo-preference-optimization.md
EMPO_T5 = {"Human": (0.30, 0.07, 0.28, 0.14, 0.18), "baseline": (0.30, 0.05, 0.24, 0.11, 0.15),
           "len-control baseline": (0.26, 0.05, 0.26, 0.12, 0.15), "SFT": (0.22, 0.04, 0.29, 0.13, 0.18),
           "SFT+DPO": (0.29, 0.06, 0.27, 0.13, 0.16)}
T5_KEYS = ("nidf", "nidf-sd", "wc-intensity-abs", "wc-valence-abs", "wc-arousal-abs")
EMPO_T4 = {"Human": (2526, 2746, 22279, 881, 65.64, 370), "baseline": (2529, 5339, 29080, 788, 44.53, 31),
           "len-control baseline": (2326, 2625, 13425, 787, 53.33, 35), "SFT": (2390, 2085, 9437, 741, 47.90, 48),
           "SFT+DPO": (2538, 2927, 20074, 806, 60.36, 256)}
T4_KEYS = ("tries-templates", "tries-span-nodes", "tries-total-nodes", "tries-root-children", "tries-compression",
           "tries-unique-start-words")
T4_DIGITS = (0, 0, 0, 0, 2, 0)  # compression printed as a percentage with 2 decimals

# other systems: (label, file, preset, decode, key, printed, digits, where printed); printed None = none known
OTHERS = [
    ("MIME", "declare-lab+MIME/output.txt", "moel-paper", "greedy", "bleu-moses-4", 2.76, 2, "output.txt header Bleu_g"),
    ("MIME", "declare-lab+MIME/output.txt", "moel-paper", "beam", "bleu-moses-4", 3.13, 2, "output.txt header Bleu_b"),
    ("MIME", "declare-lab+MIME/output.txt", "moel-paper", "topk", "bleu-moses-4", 1.76, 2, "output.txt header Bleu_t"),
    ("MoEL: TRS", "HLTCHKUST+MoEL/generation_result.txt", "moel-paper", "trs", "bleu-moses-4", 3.02, 2,
     "MoEL paper, TRS BLEU (as quoted in issue 19)"),
    ("MoEL: Multi-TRS", "HLTCHKUST+MoEL/generation_result.txt", "moel-paper", "trs+multitask", "bleu-moses-4", None, 2, ""),
    ("MoEL", "HLTCHKUST+MoEL/generation_result.txt", "moel-paper", "MOE", "bleu-moses-4", None, 2, ""),
    ("MoEL oracle", "HLTCHKUST+MoEL/generation_result.txt", "moel-paper", "MOE+oracle", "bleu-moses-4", None, 2, ""),
    ("CEM (greedy)", "MichiganNLP+empathy_eval/data/outputs/cem_responses.json", "cem-paper", "decoder_greedy",
     "dist-1", 0.66, 2, "CEM paper Table 2 (quoted, not on this machine)"),
    ("CEM (greedy)", "MichiganNLP+empathy_eval/data/outputs/cem_responses.json", "cem-paper", "decoder_greedy",
     "dist-2", 2.99, 2, "CEM paper Table 2 (quoted, not on this machine)"),
    ("KEMP", "qtli+KEMP/result/KEMP/KEMP.txt", "kemp-paper", "pred", "dist-ws-1", 0.55, 2,
     "KEMP paper Table 2 (quoted, not on this machine)"),
    ("KEMP", "qtli+KEMP/result/KEMP/KEMP.txt", "kemp-paper", "pred", "dist-ws-2", 2.29, 2,
     "KEMP paper Table 2 (quoted, not on this machine)"),
    ("CARE", "wangjs9+CARE-master/save/generated_results.txt", "moel-paper", "pred", "bleu-moses-4", None, 2,
     "references: the ref: lines of MoEL's file (same 5,255 test examples)"),
] + [(f"EmpDG: {n}", f"qtli+EmpDG/Predictions/{n}.txt", "kemp-paper", d, k, None, 2, "")
     for n, d in (("EmpDG", "pred"), ("EmpDG_woD", "pred"), ("EmpDG_woG", "pred"), ("EmoPrepend", "pred"),
                  ("Transformer", "pred"), ("MoEL", "greedy"))
     for k in ("dist-ws-1", "dist-ws-2", "bleu-macro", "bleu-macro-p1", "bleu-macro-p2")]


class _CountsOnly(pickle.Unpickler):
    """Read Lee et al.'s / EmPO's ``ed_counts.pkl`` (a dict of Counters) without running arbitrary pickled code."""

    def find_class(self, module, name):
        if (module, name) in {("collections", "Counter"), ("collections", "defaultdict"), ("builtins", "dict"),
                              ("builtins", "int")}:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a counts file")


def df_json(pkl: Path, out_dir: Path) -> Path:
    """``ed_counts.pkl`` → ``word_counts`` as JSON beside the released files (never in the repository)."""
    out = out_dir / (pkl.stem + ".word_counts.json")
    if not out.is_file():
        with pkl.open("rb") as f:
            counts = _CountsOnly(f).load()["word_counts"]
        out.write_text(json.dumps(dict(counts)), encoding="utf-8")
    return out


def _score(records, preset, options=None, skip=()):
    from empathkit.evaluation import evaluate_records, resolve_metrics

    chosen = [(m, o) for m, o in resolve_metrics(None, preset, options) if m not in skip]
    return evaluate_records(records, chosen, progress=False).aggregates


def _digest(records) -> str:
    import hashlib

    return hashlib.sha1("\n".join(r.hypothesis for r in records).encode("utf-8")).hexdigest()[:12]


def _row(system, file, decode, preset, key, ours, printed, digits, where):
    shown = f"{ours:.{digits}f}" if ours is not None else None
    printed_s = f"{printed:.{digits}f}" if printed is not None else "—"
    match = None if printed is None or ours is None else f"{ours:.{digits}f}" == f"{printed:.{digits}f}"
    return {"system": system, "file": file, "decode": decode, "preset": preset, "key": key,
            "ours": ours, "ours_printed_digits": shown, "printed": printed, "printed_s": printed_s, "source": where,
            "match": "yes" if match else ("no" if match is False else "—")}


def empo_rows(root: Path, skip_tries: bool, cached_only: bool = False) -> list[dict]:
    from empathkit.evaluation.released import read_released

    df = df_json(root / EMPO / "data/empathy_datasets/empathetic_dialogues/ed_counts.pkl", root / EMPO)
    opts = {"nidf": {"df_table": str(df)},
            "word-choice": {"vad_file": str(root / EMPO / "data/misc/VAD.json"),
                            "intensity_file": str(root / EMPO / "data/misc/intensity.txt")}}
    rows = []
    systems = []
    for name, rel in EMPO_FILES.items():
        gens, *human = read_released(root / rel, "empo", human=(name == "baseline"))
        systems.append((name, rel, gens.records))
        if human:
            systems.insert(0, ("Human", rel + " (gen_targets)", human[0].records))
    cache_file = root / "published-outputs-tries-cache.json"  # tries take minutes: kept beside the files
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    for name, rel, recs in systems:
        agg = _score(recs, "empo-paper", opts, ("response-tries",))
        key = f"{rel}|{name}|string|{_digest(recs)}"
        skip = skip_tries or (cached_only and key not in cache)
        if not skip:
            if key not in cache:
                cache[key] = _score(recs, "empo-paper", opts, ("nidf", "word-choice"))
                cache_file.write_text(json.dumps(cache, indent=1))
            agg.update(cache[key])
        for key, printed in zip(T5_KEYS, EMPO_T5[name]):
            rows.append(_row(name, rel, "gens" if name != "Human" else "human", "empo-paper", key, agg[key],
                             printed, 2, T5))
        if skip:
            continue
        agg = dict(agg, **{"tries-compression": 100 * agg["tries-compression"]})
        for key, printed, d in zip(T4_KEYS, EMPO_T4[name], T4_DIGITS):
            rows.append(_row(name, rel, "gens" if name != "Human" else "human", "empo-paper", key, agg[key],
                             printed, d, T4))
    return rows


def care_refs(root: Path) -> Path:
    """CARE releases responses only: take the references of the same test examples from MoEL's released file."""
    from empathkit.evaluation.released import read_released

    out = root / "HLTCHKUST+MoEL" / "refs.txt"
    if not out.is_file():
        recs = read_released(root / "HLTCHKUST+MoEL/generation_result.txt", "moel")[0].records
        out.write_text("".join(r.reference + "\n" for r in recs), encoding="utf-8")
    return out


def other_rows(root: Path) -> list[dict]:
    from empathkit.evaluation.presets import PRESET_READER
    from empathkit.evaluation.released import read_released

    cache: dict = {}
    rows = []
    for label, rel, preset, decode, key, printed, digits, where in OTHERS:
        strip = PRESET_READER.get(preset, {}).get("strip", "prefix")
        if (rel, preset, decode) not in cache:
            care = rel.startswith("wangjs9+CARE")
            refs = care_refs(root) if care else None
            systems = {s.decode: s for s in read_released(root / rel, "care" if care else "auto", strip,
                                                          references=refs)}
            cache[(rel, preset, decode)] = _score(systems[decode].records, preset)
        rows.append(_row(label, rel, decode, preset, key, cache[(rel, preset, decode)][key], printed, digits, where))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--released", default=os.environ.get("EMPATHKIT_RELEASED", ""),
                    help="folder of the fetched released files (or $EMPATHKIT_RELEASED)")
    ap.add_argument("--skip-tries", action="store_true", help="leave out EmPO Table 4 (response tries: slow)")
    ap.add_argument("--tries-cached-only", action="store_true",
                    help="EmPO Table 4 only for the systems whose tries are already in the cache file")
    args = ap.parse_args()
    if not args.released:
        ap.error("give --released DIR (or set EMPATHKIT_RELEASED): the released files are not in the repository")
    root = Path(args.released)
    t0 = time.perf_counter()
    rows, missing = [], []
    for part in (other_rows, lambda r: empo_rows(r, args.skip_tries, args.tries_cached_only)):
        try:
            rows += part(root)
        except FileNotFoundError as e:
            missing.append(str(e))
        except Exception as e:  # a missing released file is reported by the readers as a DataError
            from empathkit.errors import DataError, ResourceMissing

            if not isinstance(e, (DataError, ResourceMissing)):
                raise
            missing.append(str(e))
    checked = [r for r in rows if r["printed"] is not None]
    n_match = sum(r["match"] == "yes" for r in checked)
    notes = [f"{n_match} of {len(checked)} printed numbers reproduced to the printed digit "
             f"({len(rows) - len(checked)} rows have no printed number to compare).",
             f"{time.perf_counter() - t0:.0f} s in all.", *[f"missing: {m}" for m in missing]]
    table = [{"system": r["system"], "decode": r["decode"], "preset": r["preset"], "key": r["key"],
              "ours": r["ours_printed_digits"], "printed": r["printed_s"], "match": r["match"], "source": r["source"]}
             for r in rows]
    path = write_results("published-outputs", {"released": str(root), "rows": rows, "missing": missing}, table,
                         "Published systems' released outputs, scored as they are", notes)
    print(path.read_text())


if __name__ == "__main__":
    main()
