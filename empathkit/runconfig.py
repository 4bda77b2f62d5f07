"""The shared top level of every run config (``method``, ``seed``, ``data``, ``model``, ``train``, ``generation``)
and the dataset examples it selects.

It sits below the methods and the training layer (both read run configs) and imports only ``config``, ``errors``,
``models.generation`` and ``data``; :mod:`empathkit.api` re-exports everything here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from empathkit.config import validate
from empathkit.models.generation import GenerationSettings


class DataConfig(BaseModel):
    model_config = {"extra": "forbid"}

    source: str = Field("ed", description="'ed' (data root), a release folder / .tar.gz, a .jsonl file, or hf:<id>")
    protocol: str = Field("every-listener", description="every-listener | last-listener")
    max_history: int | None = Field(None, ge=1)
    train_limit: int | None = Field(None, ge=1)
    valid_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)
    split: Literal["train", "valid", "test"] = Field("test", description="split to generate for")
    stratify: bool = Field(True, description="subsets balanced over the 32 emotions")


class RunConfig(BaseModel):
    """The shared top level of every run config; ``model`` and ``train`` are validated by the method itself
    (``MethodSpec.config_cls``)."""

    model_config = {"extra": "forbid"}

    method: str = "prompt"
    seed: int = 0
    output_dir: str = "runs"
    run_name: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)


def resolve(cfg: dict | RunConfig) -> RunConfig:
    """A validated :class:`RunConfig` (unknown keys and wrong types fail with the dotted key's name)."""
    if isinstance(cfg, RunConfig):
        return cfg
    return validate(RunConfig, cfg)  # type: ignore[return-value]


def examples_for(rc: RunConfig, split: str | None = None, limit: int | None = None):
    """The examples of ``split`` (default ``data.split``) under the config's protocol, history and limit."""
    from empathkit.data import load_examples

    split = split or rc.data.split
    lim = limit if limit is not None else {"train": rc.data.train_limit, "valid": rc.data.valid_limit,
                                           "test": rc.data.test_limit}.get(split)
    return load_examples(rc.data.source, split, rc.data.protocol, rc.data.max_history, lim, rc.seed, rc.data.stratify)
