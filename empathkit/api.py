"""The Python API behind the CLI: resolve a run config, load a method's generator, generate, save a run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from empathkit.config import validate
from empathkit.errors import ConfigError
from empathkit.models.generation import GenerationSettings

log = logging.getLogger(__name__)


class DataConfig(BaseModel):
    model_config = {"extra": "forbid"}

    source: str = Field("ed", description="'ed' (data root), a release folder / .tar.gz, a .jsonl file, or hf:<id>")
    protocol: str = Field("every-listener", description="every-listener | last-listener")
    max_history: int | None = Field(None, ge=1)
    train_limit: int | None = Field(None, ge=1)
    valid_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    split: str = Field("test", description="split to generate for")
    stratify: bool = Field(True, description="subsets balanced over the 32 emotions")


class RunConfig(BaseModel):
    """The shared top level of every run config; ``model`` and ``train`` are validated by the method itself."""

    model_config = {"extra": "forbid"}

    method: str = "prompt"
    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


def resolve(cfg: dict) -> RunConfig:
    return validate(RunConfig, cfg)  # type: ignore[return-value]


def method_spec(name: str):
    from empathkit.methods import METHODS

    return METHODS.get(name)


def load_generator(method: str | None = None, run_dir: str | Path | None = None, model_config: dict | None = None):
    """Load a generator either from a trained run directory or from a method name + its ``model`` config."""
    from empathkit.runs import load_run_config

    if run_dir is not None:
        rd = Path(run_dir)
        if not (rd / "config.yaml").is_file():
            raise ConfigError(f"{rd} is not a run directory (no config.yaml)")
        rc = resolve(load_run_config(rd))
        # inference-time keys given on top of the run's config (e.g. ECG-LoRA model.gate=0.5) reach the method
        return method_spec(rc.method).load({**rc.model, **(model_config or {})}, run_dir=rd)
    return method_spec(method or "prompt").load(model_config or {}, run_dir=None)


def examples_for(rc: RunConfig, split: str | None = None, limit: int | None = None):
    from empathkit.data import load_examples

    split = split or rc.data.split
    lim = limit if limit is not None else {"train": rc.data.train_limit, "valid": rc.data.valid_limit,
                                           "test": rc.data.test_limit}.get(split)
    return load_examples(rc.data.source, split, rc.data.protocol, rc.data.max_history, lim, rc.seed, rc.data.stratify)


def run_generate(cfg: dict, from_run: str | Path | None = None, progress: bool = True) -> Path:
    """Generate for ``data.split`` and write a run directory with predictions.jsonl, config, seed and versions."""
    from empathkit.runs import new_run_dir, save_run_meta, set_seed, write_jsonl

    rc = resolve(cfg)
    set_seed(rc.seed)
    gen = load_generator(rc.method, from_run, rc.model) if from_run else load_generator(rc.method, None, rc.model)
    examples = examples_for(rc)
    run_dir = new_run_dir(rc.output_dir, rc.run_name or f"generate-{gen.name}")
    save_run_meta(run_dir, rc.model_dump() | ({"from_run": str(from_run)} if from_run else {}), rc.seed)
    settings = rc.generation
    if "generation" not in cfg and gen.default_settings is not None:
        settings = gen.default_settings
    preds = gen.generate(examples, settings, progress=progress)
    write_jsonl(preds, run_dir / "predictions.jsonl")
    log.info("wrote %d predictions to %s", len(preds), run_dir / "predictions.jsonl")
    return run_dir
