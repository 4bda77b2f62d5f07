"""EmPO end to end on the tiny random Llama: SFT → DPO through the CLI's train entry point and the method registry, run dir layout, load → generate;
config validation; the stability aggregation; the optional lm-eval hook skips cleanly."""

from __future__ import annotations

import json

import pytest

from empathkit.errors import ConfigError
from empathkit.testing import make_dialogues


@pytest.fixture(scope="module")
def empo_run(tmp_path_factory):
    from empathkit.api import train
    from empathkit.data.jsonl import write_jsonl

    root = tmp_path_factory.mktemp("empo")
    write_jsonl(make_dialogues(), root / "dialogues.jsonl")
    cfg = {"method": "empo", "seed": 0, "data": {"source": str(root / "dialogues.jsonl"), "protocol": "last-listener"},
           "model": {"backbone": "tiny-random-llama", "system_prompt": "Be kind."},
           "train": {"max_steps": 1, "batch_size": 2, "lr": 1e-3, "max_length": 64, "warmup_ratio": 0.0,
                     "early_stopping_patience": None, "save_every": 100,
                     "dpo": {"epochs": 2, "batch_size": 2, "gradient_accumulation_steps": 1, "train_limit": 2,
                             "learning_rate": 1e-3, "save_steps": 100}}}
    run_dir = train(cfg, root / "run", progress=False)  # what `empathkit train --method empo` calls
    return run_dir, cfg


def test_pipeline_writes_sft_dpo_and_draws(empo_run):
    run_dir, _ = empo_run
    for rel in ("config.yaml", "versions.json", "sft/adapter/adapter_config.json", "adapter/adapter_config.json",
                "preference/report.json", "preference/epoch-0.jsonl", "preference/epoch-1.jsonl", "dpo_log.jsonl"):
        assert (run_dir / rel).is_file(), rel
    info = json.loads((run_dir / "dpo_info.json").read_text())
    assert info["prompts"] == 2 and info["draws"] == 2 and info["global_step"] == 2
    assert info["max_prompt_length"] > 0 and info["max_completion_length"] > 0  # p95 of the data
    row = json.loads((run_dir / "preference/epoch-0.jsonl").read_text().splitlines()[0])
    assert row["prompt"][0] == {"role": "system", "content": "Be kind."}  # the SFT run's system prompt


def test_load_generates_from_the_run(empo_run):
    from empathkit.api import load_generator
    from empathkit.data.protocols import to_examples
    from empathkit.models.generation import GenerationSettings

    run_dir, _ = empo_run
    gen = load_generator(run_dir=run_dir)
    assert gen.name == "empo" and "ref" not in gen.model.peft_config
    preds = gen.generate(to_examples(make_dialogues()[:2], "last-listener"),
                         GenerationSettings(max_new_tokens=3, batch_size=2), progress=False)
    assert len(preds) == 2 and preds[0].settings["method"] == "empo"


def test_unknown_dpo_key_is_named():
    from empathkit.config import validate
    from empathkit.methods.empo import EmpoConfig

    with pytest.raises(ConfigError, match="train.dpo.betta"):
        validate(EmpoConfig, {"train": {"dpo": {"betta": 0.1}}})
    cfg = validate(EmpoConfig, {})
    assert (cfg.train.dpo.beta, cfg.train.dpo.learning_rate, cfg.train.dpo.epochs) == (0.05, 1e-6, 3)


def test_stability_table_shows_mean_and_sd():
    from empathkit.evaluation import EvalResult, SystemResult
    from empathkit.methods.empo.stability import to_markdown

    runs = [SystemResult("sft+dpo", 2, {"bertscore-f1": 0.8}), SystemResult("sft+dpo", 2, {"bertscore-f1": 0.9}),
            SystemResult("base", 2, {"bertscore-f1": 0.7})]
    summary = EvalResult(runs, []).summary()
    assert summary["sft+dpo"]["bertscore-f1"]["sd"] == pytest.approx(0.0707107, rel=1e-4)  # sample SD over seeds
    md = to_markdown(summary)
    assert "| sft+dpo | 2 | 0.850 ± 0.071 |" in md and "| base | 1 | 0.700 ± 0.000 |" in md


def test_lm_eval_hook_skips_cleanly_without_the_package(monkeypatch):
    import importlib.util

    from empathkit.methods.empo import lm_eval_hook

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    out = lm_eval_hook.run_lm_eval("unused", tasks=["mmlu"])
    assert out["skipped"] is True and "lm-evaluation-harness" in out["reason"]
