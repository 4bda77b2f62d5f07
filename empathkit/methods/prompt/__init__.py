"""The zero-shot structured-prompt baseline (NLPCC 2025 Task 8 prompt engineering; EmPO's length-controlled prompt)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from empathkit.methods.base import MethodSpec
from empathkit.methods.causal import CausalLMGenerator
from empathkit.models.generation import GenerationSettings
from empathkit.models.templates import TEMPLATES, system_prompt_builder


class PromptConfig(BaseModel):
    model_config = {"extra": "forbid"}

    backbone: str = "smollm2-135m-instruct"
    template: str = Field("structured-v1", description="a name from empathkit.models.templates.TEMPLATES")
    use_emotion: bool = Field(True, description="put the (gold or predicted) emotion label into the system prompt")
    use_situation: bool = Field(False, description="put the ED situation text into the system prompt")


class PromptGenerator(CausalLMGenerator):
    """The structured template as system prompt, filled with the controls' emotion / situation when configured."""

    name = "prompt"

    def __init__(self, model, tokenizer, config: PromptConfig):
        tpl = TEMPLATES.get(config.template)
        settings = GenerationSettings(max_new_tokens=tpl.max_new_tokens) if tpl.max_new_tokens else None
        sp = system_prompt_builder(tpl.name, config.use_emotion, config.use_situation)
        super().__init__(model, tokenizer, sp, info={"template": tpl.name}, default_settings=settings)
        self.template, self.config = tpl, config

    def save(self, run_dir):
        """A run directory holding only the config: nothing is trained."""
        from pathlib import Path

        from empathkit.runs import save_run_meta

        save_run_meta(Path(run_dir), {"method": "prompt", "model": self.config.model_dump()}, 0)
        return Path(run_dir)


def load(config: PromptConfig | dict | None = None, run_dir=None, model=None, tokenizer=None) -> PromptGenerator:
    """``config`` is the run config's ``model`` section (or a PromptConfig); ``run_dir`` is unused (nothing trained)."""
    from empathkit.config import validate
    from empathkit.models.backbones import cached_backbone

    cfg = config if isinstance(config, PromptConfig) else validate(PromptConfig, config, "model")
    if model is None:
        model, tokenizer = cached_backbone(cfg.backbone)
    return PromptGenerator(model, tokenizer, cfg)


SPEC = MethodSpec("prompt", PromptConfig, load=load, train=None,
                  description="zero-shot structured prompt (role, task, guidelines) on any chat backbone")
