"""``method: reg`` training (docs/methods/reg.md): the exemplar index, then stage 1 (G1, Eq. 2) through the shared
causal-LM driver, then stage 2 (the retriever, ``reg/retriever.py``), then stage 3 (``reg/joint.py``: G2 alone
(``g2``) or G2 + retriever on Eq. 7 (``joint``)). ``train.ablations`` (``reg/ablations.py``) rewrite the config
first.

Run directory::

    config.yaml  versions.json  seed  log.jsonl  checkpoints/  train_summary.json  done    # as SFT (G1)
    index/        the exemplar index (ED train per the run's data section; valid / test never enter it)
    adapter/      G1's PEFT adapter + tokenizer
    retriever/    stage 2 (query_encoder/ …), when the stage ran
    g2/           stage 3: a driver run directory of G2 (adapter/, log.jsonl, done; joint: adapter/query_encoder/)
    reg_stages.json   the stages run, their wall seconds, the attribute source and corpus size
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from empathkit.errors import ConfigError, ResourceMissing
from empathkit.methods.reg.config import REGModelConfig, REGTrainConfig
from empathkit.types import Controls, Example

log = logging.getLogger(__name__)


def _is_seq2seq(backbone: str) -> bool:
    """Whether a backbone name is an encoder–decoder (without loading weights; unknown names: False, and the
    driver's own check still refuses them)."""
    from empathkit.models.backbones import ALIASES, DEFAULT_BACKBONE

    if backbone == "tiny-random-t5":
        return True
    if backbone in (DEFAULT_BACKBONE, "tiny-random-llama"):
        return False
    try:
        from transformers import AutoConfig

        return bool(AutoConfig.from_pretrained(ALIASES.get(backbone) if backbone in ALIASES else backbone,
                                               trust_remote_code=False).is_encoder_decoder)
    except Exception:  # noqa: BLE001 — offline / unknown: decided when the driver loads the model
        return False


def retrieval_config(mc: REGModelConfig, rc):
    """The index's build config: ``model.retrieval`` with the run's ``data`` section and seed unless the retrieval
    section sets its own."""
    r = mc.retrieval
    upd: dict[str, Any] = {}
    if "data" not in r.model_fields_set:
        upd["data"] = rc.data
    if "seed" not in r.model_fields_set:
        upd["seed"] = rc.seed
    return r.model_copy(update=upd)


def build_run_index(mc: REGModelConfig, tc: REGTrainConfig, rc, run_dir: Path, *, examples=None, encoder=None,
                    tagger=None, progress: bool = True):
    """Build or reuse ``run_dir/index`` (``train.index_from``: a prebuilt index copied in first, so only what its
    build config does not match is recomputed)."""
    from empathkit.methods.reg.index import CONFIG_FILE, build_index

    out = run_dir / "index"
    if tc.index_from and not (out / CONFIG_FILE).is_file():
        src = Path(tc.index_from)
        if not (src / CONFIG_FILE).is_file():
            raise ResourceMissing(f"train.index_from={tc.index_from!r}: no retrieval index there")
        shutil.copytree(src, out, dirs_exist_ok=True)
    return build_index(retrieval_config(mc, rc), out, examples=examples, encoder=encoder, tagger=tagger,
                       progress=progress)


def query_attributes(examples: Sequence[Example], tagger, progress: bool = True,
                     chunk: int = 512) -> list[dict[str, Any]]:
    """The attributes of each example's *context* (``tagger.tag_queries``: the ``context`` rule whatever the
    index's source, the same as at inference — no gold response), in chunks under one progress bar."""
    from tqdm.auto import tqdm

    ctxs = [[t.text for t in ex.context] for ex in examples]
    out: list[dict[str, Any]] = []
    bar = tqdm(total=len(ctxs), desc="query attributes (context)", unit="ex", disable=not progress)
    for i in range(0, len(ctxs), chunk):
        out.extend(tagger.tag_queries(ctxs[i:i + chunk]))
        bar.update(len(ctxs[i:i + chunk]))
    bar.close()
    return out


def with_attributes(examples: Sequence[Example], attributes: Sequence[dict[str, Any] | None]) -> list[Example]:
    return [dataclasses.replace(ex, annotations=dataclasses.replace(ex.annotations, attributes=dict(a)))
            if a else ex for ex, a in zip(examples, attributes)]


def g1_prompt(mc: REGModelConfig) -> Callable[[Example], "str | None"]:
    """``example -> system prompt`` of G1's training rows: the REG prompt with the example's attribute tags
    (``annotations.attributes``) and no exemplar (Eq. 2) — built by :class:`REGCausalGenerator` itself, so training
    and generation share one builder."""
    from empathkit.methods.reg.generator import REGCausalGenerator

    gen = REGCausalGenerator(None, None, mc.prompt_config(), mc.prompt_builder())

    def prompt(ex: Example) -> str | None:
        c = dataclasses.replace(Controls.from_example(ex), exemplars=(),
                                attributes=dict(ex.annotations.attributes) or None)
        return gen.system_prompt(c)
    return prompt


def load_g1(run_dir: Path, mc: REGModelConfig, tagger=None):
    """G1 of a run as a plain :class:`REGCausalGenerator` (no retrieval of its own: stage 2 hands it exemplars)."""
    from empathkit.methods.reg.generator import REGCausalGenerator
    from empathkit.methods.reg.method import attribute_fn_for
    from empathkit.training.backbone import load_trained

    model, tok, _ = load_trained(run_dir, REGModelConfig)
    fn = attribute_fn_for(tagger) if tagger is not None and mc.needs_query_attributes else None
    return REGCausalGenerator(model, tok, mc.prompt_config(), mc.prompt_builder(), attribute_fn=fn,
                              info={"stage": "g1"}, source_dir=run_dir)


def train_reg(cfg: dict, run_dir: str | Path, progress: bool = True, *, encoder=None, tagger=None,
              corpus_examples=None) -> Path:
    """Train ``method: reg`` per ``cfg`` (a whole run config) into ``run_dir`` (module docstring). ``encoder`` /
    ``tagger`` / ``corpus_examples``: objects to use instead of the configured sentence encoder, attribute tagger
    and corpus (tests)."""
    from empathkit.config import validate
    from empathkit.methods.reg.ablations import apply_ablations
    from empathkit.runconfig import resolve
    from empathkit.training import distributed as dist
    from empathkit.training.driver import run_training, training_examples

    cfg = apply_ablations(cfg)
    rc = resolve(cfg)
    mc: REGModelConfig = validate(REGModelConfig, rc.model, "model")  # type: ignore[assignment]
    tc: REGTrainConfig = validate(REGTrainConfig, rc.train, "train")  # type: ignore[assignment]
    seq2seq = _is_seq2seq(mc.backbone)
    stage3 = next((s for s in tc.stages if s in ("g2", "joint")), None)
    rcfg = tc.retriever_config() if "retriever" in tc.stages or stage3 else None  # fails before any work
    if stage3:
        tc.g2_config()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}

    t0 = time.time()
    if dist.is_main():
        index = build_run_index(mc, tc, rc, run_dir, examples=corpus_examples, encoder=encoder, tagger=tagger,
                                progress=progress)
    dist.barrier()
    if not dist.is_main():
        from empathkit.methods.reg.index import ExemplarIndex

        index = ExemplarIndex.load(run_dir / "index", encoder=encoder, tagger=tagger)
    times["index"] = round(time.time() - t0, 2)
    if mc.mode == "reg" and not index.has_attributes:
        raise ConfigError("mode 'reg' needs an index with emotion attributes (retrieval.attributes.source != none)")

    train, valid = training_examples(rc, tc)
    t0 = time.time()
    if mc.needs_query_attributes:
        train = with_attributes(train, query_attributes(train, index.tagger, progress and dist.is_main()))
        if valid:
            valid = with_attributes(valid, query_attributes(valid, index.tagger, progress and dist.is_main()))
    times["attributes"] = round(time.time() - t0, 2)

    if seq2seq:  # FiD G1 / G2 / joint (reg/fid_train.py)
        from empathkit.methods.reg.fid_train import train_reg_fid

        times.update(train_reg_fid(cfg, run_dir, index, train, valid, mc, tc, progress))
    else:
        if "g1" in tc.stages:
            t0 = time.time()
            run_training(cfg, run_dir, train, valid, progress, model_cfg_cls=REGModelConfig,
                         train_cfg_cls=REGTrainConfig, example_prompt=g1_prompt(mc))
            times["g1"] = round(time.time() - t0, 2)
        elif not (run_dir / "adapter" / "adapter_config.json").is_file():
            raise ConfigError(f"train.stages={tc.stages} skips g1 but {run_dir} has no trained G1 (adapter/)")

        if "retriever" in tc.stages:
            from empathkit.methods.reg.retriever import train_retriever

            t0 = time.time()
            # stage 2 runs on rank 0 while the other ranks wait (one writer of the decode cache, query_encoder/ and
            # retriever_log.jsonl); under accelerate launch the other devices idle for this stage
            dist.main_first(lambda: train_retriever(
                index, load_g1(run_dir, mc, index.tagger if mc.needs_query_attributes else None), train, rcfg,
                run_dir / "retriever", progress, mode=mc.mode) and None)
            times["retriever"] = round(time.time() - t0, 2)

        if stage3:
            from empathkit.methods.reg.joint import train_g2
            from empathkit.methods.reg.retriever import stage_index

            index = stage_index(run_dir, index)  # the refreshed index when stage 2 re-indexed
            t0 = time.time()
            train_g2(cfg, run_dir, index, train, valid, mc, tc, joint=stage3 == "joint", progress=progress,
                     g1_loader=lambda: load_g1(run_dir, mc, index.tagger if mc.needs_query_attributes else None))
            times[stage3] = round(time.time() - t0, 2)

    if dist.is_main():
        (run_dir / "reg_stages.json").write_text(json.dumps(
            {"stages": tc.stages, "ablations": tc.ablations, "seconds": times, "mode": mc.mode, "k": mc.k,
             "attribute_source": mc.retrieval.attributes.source, "corpus_size": len(index),
             "train_examples": len(train), "valid_examples": len(valid or [])}, indent=2), encoding="utf-8")
    dist.barrier()
    return run_dir
