"""``empathkit annotate`` — build ReflectDiffu's multi-task ED data (reason tags + intents), train ERA, agreement."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

from empathkit.cli.common import friendly_errors


def _kv(items: Optional[List[str]]) -> dict:
    from empathkit.config import apply_overrides

    return apply_overrides({}, items or [])


@friendly_errors
def annotate(annotator: str = typer.Option("lexicon", "--annotator", "-a",
                                           help="lexicon (offline default: NRC lexicons + intent classifier), era "
                                                "(the trained ERA + intent classifier) or llm (OpenAI-compatible endpoint)"),
             source: str = typer.Option("ed", help="ed, an ED release folder / .tar.gz, or a JSONL dialogue file"),
             splits: str = typer.Option("train,valid,test", help="comma-separated splits"),
             out: Optional[str] = typer.Option(None, help="output JSONL (default: cache_dir()/annotate/ed-<annotator>.jsonl)"),
             limit: Optional[int] = typer.Option(None, min=1, help="a seeded subset of this many dialogues per split"),
             seed: int = typer.Option(0, help="seed of --limit and of ERA training"),
             overwrite: bool = typer.Option(False, "--overwrite", help="start again instead of resuming"),
             batch_size: int = typer.Option(64, min=1, help="dialogues per annotation batch"),
             llm: Optional[List[str]] = typer.Option(None, "--llm", help="LLM setting key=value (base_url, model, "
                                                                         "api_key_env, timeout, retries, max_workers, json_mode)"),
             llm_intents: bool = typer.Option(True, "--llm-intents/--classifier-intents",
                                              help="llm annotator: intents from the LLM too, or from the classifier"),
             era: Optional[str] = typer.Option(None, help="ERA folder for --annotator era (default: the trained one)"),
             intent_classifier: Optional[str] = typer.Option(None, help="intent classifier folder / Hub id"),
             train_era: bool = typer.Option(False, "--train-era", help="then train ERA on the output file"),
             era_out: Optional[str] = typer.Option(None, help="where --train-era saves ERA (default: cache)"),
             era_set: Optional[List[str]] = typer.Option(None, "--era-set", help="ERA training setting key=value "
                                                                                 "(train_limit, epochs, lr, head_lr, time_budget, …)"),
             agreement: Optional[int] = typer.Option(None, min=1, help="then write the agreement report on this many "
                                                                       "ED test dialogues (lexicon vs ERA vs LLM)"),
             progress: bool = typer.Option(True, "--progress/--no-progress")):
    """Annotate dialogues with emotion-reason tags (speaker turns) and intents (listener turns), resumably."""
    from empathkit.annotate.pipeline import annotate_source
    from empathkit.cli.common import console, print_table

    rep = annotate_source(source, [s.strip() for s in splits.split(",") if s.strip()], annotator=annotator, out=out,
                          limit=limit, seed=seed, overwrite=overwrite, batch_size=batch_size, progress=progress,
                          era_path=era, intent_source=intent_classifier, llm_config=_kv(llm), llm_intents=llm_intents)
    c = rep.counts()
    rows = [["dialogues in source", str(rep.dialogues_total)], ["already annotated (resumed)", str(rep.resumed)],
            ["written now", str(rep.written)], ["annotated turns", str(c["annotated_turns"])]]
    rows += [[f"skipped turns: {k}", str(v)] for k, v in c["skipped_turns"].items()]
    rows += [[f"rejected turns: {k}", str(v)] for k, v in c["rejected_turns"].items()]
    rows += [[f"rejected replies: {k}", str(v)] for k, v in c["rejected_replies"].items()]
    print_table(["annotate", "count"], rows, title=f"{rep.annotator} → {rep.path} ({rep.seconds:.0f} s)")
    if train_era:
        from empathkit.annotate.era import default_era_path
        from empathkit.annotate.era.train import ERATrainConfig, train_era as _train
        from empathkit.config import validate

        cfg = validate(ERATrainConfig, {"seed": seed} | _kv(era_set), "era")
        m = _train(rep.path, era_out or default_era_path(), cfg, progress=progress)
        t, s = m["test"]["token"], m["test"]["span"]
        console.print(f"ERA: held-out token F1 {t['f1']:.3f} (P {t['precision']:.3f} R {t['recall']:.3f}), "
                      f"span F1 {s['f1']:.3f} → {era_out or default_era_path()}", highlight=False)
    if agreement:
        from empathkit.annotate.agreement import agreement_report

        r = agreement_report(n_dialogues=agreement, seed=seed, llm_config=_kv(llm) or None)
        console.print_json(json.dumps(r["summary"]))
