"""EmPO training: SFT (the shared causal-LM driver, :func:`empathkit.training.driver.run_training`, with SFT's
config) then DPO on Plutchik-opposite preference pairs. Under ``accelerate launch`` both stages run on every process;
rank 0 writes the run directory and the other ranks wait for it before reading it (the SFT adapter before DPO).

Run directory layout::

    config.yaml  versions.json  seed     # empathkit.runs.save_run_meta (the EmPO config)
    sft/                                 # the SFT run (adapter/, config.yaml, …) unless train.dpo.sft_run is given
    preference/report.json               # per epoch: pairs, prompts without opposite-emotion candidates, pool sizes
    preference/epoch-<e>.jsonl           # every epoch's draw (train.dpo.save_pairs)
    dpo/checkpoint-N/                    # Trainer checkpoints (resumable)
    adapter/                             # the DPO LoRA adapter (on top of the merged SFT model) + tokenizer
    dpo_log.jsonl  dpo_info.json         # TRL's log history (loss, rewards, margins…), lengths and step counts
"""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

from empathkit.config import validate
from empathkit.errors import ConfigError, ResourceMissing
from empathkit.methods.empo.config import DPOSection, EmpoTrainConfig
from empathkit.training import distributed as dist

log = logging.getLogger(__name__)


def _info(msg: str, *args) -> None:
    if dist.is_main():  # one line per stage, not one per process
        log.info(msg, *args)


def sft_config_from(cfg: dict) -> dict:
    """The SFT run config inside an EmPO config: same seed/data/model, ``train`` without ``dpo``."""
    sft = copy.deepcopy(cfg)
    sft["method"] = "sft"
    sft["train"] = {k: v for k, v in (cfg.get("train") or {}).items() if k != "dpo"}
    return sft


def merged_sft_model(sft_run: str | Path):
    """Load an SFT run and fold its LoRA adapter into the base weights (in memory): ``(model, tokenizer, model_cfg)``.

    The returned model *is* the SFT policy; a fresh DPO adapter on top of it, disabled, gives exactly the SFT model
    — the DPO reference — without a second model copy.
    """
    from empathkit.training.backbone import load_trained

    model, tok, mc = load_trained(sft_run)
    lora_like = None
    if getattr(model, "peft_config", None):
        lora_like = copy.deepcopy(model.peft_config["default"])
        model = model.merge_and_unload()
    model.config.use_cache = False
    return model, tok, mc, lora_like


def dpo_examples(rc, dcfg: DPOSection):
    """(prompts, candidate pool): last-listener examples of the train split (prompts subsampled, stratified)."""
    from empathkit.data import load_dialogues, subsample
    from empathkit.data.protocols import to_examples

    dialogues = load_dialogues(rc.data.source, "train")
    pool = to_examples(dialogues, "last-listener", dcfg.max_history)
    limit = dcfg.train_limit if dcfg.train_limit is not None else rc.data.train_limit
    prompts = subsample(pool, limit, rc.seed, rc.data.stratify)
    return prompts, (pool if dcfg.candidate_pool == "all" else prompts)


def train_empo(cfg: dict, run_dir: str | Path, progress: bool = True, prompts=None, candidates=None) -> Path:
    """SFT (or reuse ``train.dpo.sft_run``), then DPO with per-epoch re-drawn rejected completions."""
    from empathkit.data.preference import PreferenceBuilder
    from empathkit.methods.empo.dpo import run_dpo
    from empathkit.runconfig import resolve
    from empathkit.runs import save_run_meta, set_seed

    rc = resolve(cfg)
    tc = validate(EmpoTrainConfig, rc.train, "train")
    dcfg: DPOSection = tc.dpo  # type: ignore[attr-defined]
    run_dir = Path(run_dir)
    if dist.is_main():
        save_run_meta(run_dir, rc.model_dump(), rc.seed)
    set_seed(rc.seed)

    sft_dir = Path(dcfg.sft_run) if dcfg.sft_run else run_dir / "sft"
    if dcfg.sft_run:
        if not (sft_dir / "config.yaml").is_file():
            raise ConfigError(f"train.dpo.sft_run={dcfg.sft_run!r} is not an SFT run directory (no config.yaml)")
    elif not ((sft_dir / "adapter" / "adapter_config.json").is_file() or (sft_dir / "model" / "config.json").is_file()):
        from empathkit.training.driver import run_training

        _info("EmPO stage 1/2: SFT into %s", sft_dir)
        run_training(sft_config_from(rc.model_dump()), sft_dir, progress=progress)  # ends when sft/ is complete
    else:
        _info("EmPO stage 1/2: reusing the finished SFT run in %s", sft_dir)

    _info("EmPO stage 2/2: DPO (β=%s, lr=%s, %d epochs)", dcfg.beta, dcfg.learning_rate, dcfg.epochs)
    model, tok, mc, lora_like = merged_sft_model(sft_dir)
    if prompts is None:
        prompts, candidates = dpo_examples(rc, dcfg)
    sp = dcfg.system_prompt if dcfg.system_prompt is not None else mc.example_prompt()
    builder = PreferenceBuilder(prompts, candidates=candidates, k=dcfg.pairs_per_prompt, seed=rc.seed,
                                system_prompt=sp)
    tok.padding_side = "right"
    info = run_dpo(model, tok, builder, dcfg, run_dir, rc.seed, lora_like, progress)
    info["sft_run"] = str(sft_dir)
    if dist.is_main():
        (run_dir / "dpo_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        (run_dir / "done").write_text("ok\n")
    dist.barrier()
    return run_dir


def load_empo_model(run_dir: str | Path):
    """``(model, tokenizer, sft_model_cfg)``: the SFT model (adapter merged) with the DPO adapter, in eval mode."""
    from peft import PeftModel

    from empathkit.runconfig import resolve
    from empathkit.runs import load_run_config

    rd = Path(run_dir)
    if not (rd / "adapter" / "adapter_config.json").is_file():
        raise ResourceMissing(f"{rd}/adapter has no DPO adapter: training did not finish (rerun `empathkit train` "
                              f"with the same run directory to resume)")
    tc = validate(EmpoTrainConfig, resolve(load_run_config(rd)).train, "train")
    sft_dir = Path(tc.dpo.sft_run) if tc.dpo.sft_run else rd / "sft"  # type: ignore[attr-defined]
    model, _, mc, _ = merged_sft_model(sft_dir)
    model = PeftModel.from_pretrained(model, rd / "adapter")
    from empathkit.models.backbones import load_tokenizer

    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(rd / "adapter")
    except (OSError, ValueError):
        tok = load_tokenizer(mc.backbone)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    model.config.use_cache = True
    model.eval()
    return model, tok, mc
