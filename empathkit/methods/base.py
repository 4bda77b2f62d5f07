"""What every method provides: a ``Generator`` (loaded model + how it formats and conditions examples).

A method is registered as a :class:`MethodSpec`: a pydantic config class, ``train(config, run_dir)`` (``None`` for
training-free methods) and ``load(run_dir_or_config) -> Generator``. Serving, evaluation and the CLI only talk to
``Generator``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

from pydantic import BaseModel

from empathkit.models.chat import example_messages, fit_messages, render
from empathkit.models.generation import GenerationSettings, generate_texts, settings_dict
from empathkit.types import Example, Prediction


class Generator:
    """A loaded model that turns examples (or raw chat messages) into responses.

    Subclasses override :meth:`batch_context` to condition generation on per-example information (e.g. ECG-LoRA's
    emotion gate) and :meth:`system_prompt_for` to change the prompt.
    """

    name = "base"

    def __init__(self, model, tokenizer, system_prompt: str | None = None, info: dict[str, Any] | None = None,
                 default_settings: GenerationSettings | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.system_prompt = system_prompt
        self.info = dict(info or {})
        self.default_settings = default_settings or GenerationSettings()

    # -- prompt construction -------------------------------------------------------------------------------------
    def system_prompt_for(self, ex: Example) -> str | None:
        return self.system_prompt

    def messages_for(self, ex: Example) -> list[dict[str, str]]:
        return example_messages(ex, self.system_prompt_for(ex))

    def prompt_for(self, ex: Example, settings: GenerationSettings) -> str:
        msgs = fit_messages(self.tokenizer, self.messages_for(ex), settings.max_prompt_tokens)
        return render(self.tokenizer, msgs)

    # -- conditioning hook ---------------------------------------------------------------------------------------
    def batch_context(self, emotions: Sequence[str | None], gates: Sequence[float | None] | None = None) -> ContextManager:
        """Entered around each batched ``generate`` call with the batch's emotions (and optional forced gates)."""
        return contextlib.nullcontext()

    # -- generation ----------------------------------------------------------------------------------------------
    def generate(self, examples: Sequence[Example], settings: GenerationSettings | None = None,
                 progress: bool = True, gates: Sequence[float | None] | None = None) -> list[Prediction]:
        s = settings or self.default_settings
        prompts = [self.prompt_for(ex, s) for ex in examples]
        emotions = [ex.emotion for ex in examples]
        ctx: Callable[[list[int]], ContextManager] = lambda idx: self.batch_context(  # noqa: E731
            [emotions[i] for i in idx], [gates[i] for i in idx] if gates is not None else None)
        outs = generate_texts(self.model, self.tokenizer, prompts, s, batch_context=ctx, progress=progress,
                              desc=f"generating ({self.name})")
        sd = settings_dict(s) | {"method": self.name} | self.info
        return [Prediction.from_example(ex, o.text, sd, prompt_tokens=o.prompt_tokens, new_tokens=o.new_tokens)
                for ex, o in zip(examples, outs)]

    def chat(self, conversations: Sequence[list[dict[str, str]]], settings: GenerationSettings | None = None,
             emotions: Sequence[str | None] | None = None, gates: Sequence[float | None] | None = None,
             progress: bool = False) -> list[str]:
        """Reply to raw chat conversations (OpenAI-style message lists), batched. Used by chat and serve."""
        s = settings or self.default_settings
        prompts = []
        for msgs in conversations:
            if self.system_prompt and not any(m["role"] == "system" for m in msgs):
                msgs = [{"role": "system", "content": self.system_prompt}] + list(msgs)
            prompts.append(render(self.tokenizer, fit_messages(self.tokenizer, list(msgs), s.max_prompt_tokens)))
        emos = list(emotions) if emotions is not None else [None] * len(prompts)
        ctx = lambda idx: self.batch_context([emos[i] for i in idx],  # noqa: E731
                                             [gates[i] for i in idx] if gates is not None else None)
        return [o.text for o in generate_texts(self.model, self.tokenizer, prompts, s, batch_context=ctx,
                                               progress=progress)]


@dataclass
class MethodSpec:
    name: str
    config_cls: type[BaseModel]
    load: Callable[..., Generator]
    train: Callable[..., Path] | None = None
    description: str = ""
