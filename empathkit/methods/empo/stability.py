"""Stability across seeds (EmPO Table 2: mean ± SD over training runs that differ only in seed and rejected draw).

:func:`run_stability` trains one EmPO run per seed (optionally sharing one SFT run, so only DPO initialisation and
the rejected draws vary), generates for the same test subset, evaluates all runs with :mod:`empathkit.evaluation`
(a repeated system name = another seed) and writes ``stability.json`` / ``stability.md`` plus the full evaluation
report. Systems: ``base`` (the backbone with the SFT system prompt), ``sft`` and ``sft+dpo``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

log = logging.getLogger(__name__)

SYSTEMS = ("base", "sft", "sft+dpo")


def to_markdown(summary: Mapping[str, Mapping[str, Mapping[str, float]]], keys: Sequence[str] | None = None,
                digits: int = 3) -> str:
    """``system → metric → {mean, sd, n_runs}`` as a Markdown table of ``mean ± sd`` cells."""
    systems = list(summary)
    if keys is None:
        keys = []
        for s in systems:
            keys += [k for k in summary[s] if k not in keys]
    lines = ["| system | runs | " + " | ".join(keys) + " |", "|---|---:|" + "---:|" * len(keys)]
    for s in systems:
        n = max((int(v.get("n_runs", 1)) for v in summary[s].values()), default=0)
        cells = []
        for k in keys:
            v = summary[s].get(k)
            if v is None or v.get("mean") is None or (isinstance(v["mean"], float) and math.isnan(v["mean"])):
                cells.append("–")
            else:
                cells.append(f"{v['mean']:.{digits}f} ± {v.get('sd', 0.0):.{digits}f}")
        lines.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _base_generator(sft_run: Path):
    """The untrained backbone with the SFT run's system prompt (EmPO's "baseline")."""
    from empathkit.config import validate
    from empathkit.methods.causal import RunGenerator
    from empathkit.runconfig import resolve
    from empathkit.runs import load_run_config
    from empathkit.training.backbone import load_base
    from empathkit.training.config import LMModelConfig

    mc = validate(LMModelConfig, resolve(load_run_config(sft_run)).model, "model")
    model, tok = load_base(mc)
    model.config.use_cache = True
    model.eval()
    tok.padding_side = "left"
    return RunGenerator(model, tok, mc, "base")


def generate_system(system: str, run_dir: Path, examples, settings, progress: bool = True):
    """Predictions of one system of one EmPO run: ``base`` / ``sft`` (its SFT run) / ``sft+dpo``."""
    from empathkit.config import validate
    from empathkit.methods.empo import load as load_empo
    from empathkit.methods.empo.config import EmpoTrainConfig
    from empathkit.methods.sft import load as load_sft
    from empathkit.runconfig import resolve
    from empathkit.runs import load_run_config

    tc = validate(EmpoTrainConfig, resolve(load_run_config(run_dir)).train, "train")
    sft_run = Path(tc.dpo.sft_run) if tc.dpo.sft_run else Path(run_dir) / "sft"  # type: ignore[attr-defined]
    if system == "sft+dpo":
        gen = load_empo(None, run_dir)
    elif system == "sft":
        gen = load_sft(None, sft_run)
    elif system == "base":
        gen = _base_generator(sft_run)
    else:
        raise ValueError(f"unknown system {system!r}; expected one of {SYSTEMS}")
    return gen.generate(examples, settings, progress=progress)


def run_stability(cfg: dict, seeds: Sequence[int], out_dir: str | Path, *, systems: Sequence[str] = SYSTEMS,
                  share_sft: bool = True, test_limit: int | None = 200, preset: str | None = "empo",
                  metrics: Sequence[str] | None = None, settings=None, progress: bool = True,
                  reuse_predictions: bool = True) -> dict[str, Any]:
    """Train/generate/evaluate per seed; returns the evaluation summary (system → metric → mean/sd/n_runs).

    Systems that do not depend on the seed (``base``; ``sft`` when ``share_sft``) are generated once.
    Finished runs (``<out>/seed-<s>/done``) and their saved predictions (``predictions-<system>.jsonl``, unless
    ``reuse_predictions=False``) are reused, so an interrupted study resumes and a re-evaluation (e.g. after
    training the EPITOME classifiers) does not regenerate.
    """
    from empathkit.data import load_examples
    from empathkit.evaluation import evaluate, read_predictions, records_from_predictions, write_report
    from empathkit.methods.empo.trainer import train_empo
    from empathkit.models.generation import GenerationSettings
    from empathkit.runconfig import resolve
    from empathkit.runs import write_jsonl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rc = resolve(cfg)
    examples = load_examples(rc.data.source, "test", "last-listener", None, test_limit, 0, True)
    settings = settings or GenerationSettings()
    runs: list[tuple[str, list]] = []
    timings: dict[str, float] = {}
    if (out / "stability.json").is_file():  # a resumed / re-evaluated study keeps the timings of earlier stages
        timings.update(json.loads((out / "stability.json").read_text(encoding="utf-8")).get("timings_s", {}))
    shared_sft: str | None = None
    for i, seed in enumerate(seeds):
        c = copy.deepcopy(cfg)
        c["seed"] = int(seed)
        if share_sft and shared_sft:
            c.setdefault("train", {}).setdefault("dpo", {})["sft_run"] = shared_sft
        run_dir = out / f"seed-{seed}"
        if not (run_dir / "done").is_file():
            t0 = time.time()
            train_empo(c, run_dir, progress=progress)
            timings[f"train/seed-{seed}"] = time.time() - t0
        if share_sft and shared_sft is None:
            shared_sft = str(run_dir / "sft")
        for system in systems:
            if i > 0 and (system == "base" or (system == "sft" and share_sft)):
                continue
            pred_file = run_dir / f"predictions-{system.replace('+', '-')}.jsonl"
            if pred_file.is_file() and reuse_predictions:
                runs.append((system, read_predictions(pred_file)))
                continue
            t0 = time.time()
            preds = generate_system(system, run_dir, examples, settings, progress)
            timings[f"generate/{system}/seed-{seed}"] = time.time() - t0
            write_jsonl(preds, pred_file)
            runs.append((system, records_from_predictions(preds)))
    t0 = time.time()
    result = evaluate(runs, metrics=list(metrics) if metrics else None, preset=None if metrics else preset,
                      progress=progress)
    timings["evaluate"] = time.time() - t0
    write_report(result, out / "report", {"seeds": list(seeds), "systems": list(systems), "config": cfg})
    summary = result.summary()
    skipped = {m: why for r in result.runs for m, why in r.skipped.items()}
    (out / "stability.json").write_text(json.dumps({"seeds": list(seeds), "n_test": len(examples), "summary": summary,
                                                    "skipped": skipped, "timings_s": timings}, indent=2),
                                        encoding="utf-8")
    (out / "stability.md").write_text("# EmPO stability (mean ± SD over seeds)\n\n" + to_markdown(summary) + "\n",
                                      encoding="utf-8")
    return summary
