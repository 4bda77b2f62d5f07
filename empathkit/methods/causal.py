"""The causal-LM implementation of :class:`~empathkit.methods.base.Generator` that prompt / SFT / ECG-LoRA / EmPO
specialise: chat-template prompts from :mod:`empathkit.models.chat` (the same builder training uses), batched
decoding from :mod:`empathkit.models.generation`, teacher-forced scoring from :mod:`empathkit.models.encoding`.

Hooks for subclasses: :meth:`CausalLMGenerator.system_prompt` (controls → system prompt),
:meth:`CausalLMGenerator.resolve_controls` (fill in what the caller left open, e.g. a predicted emotion),
:meth:`CausalLMGenerator.conditioning` (a context manager around each batch, e.g. ECG-LoRA's gate) and
:meth:`CausalLMGenerator.reply_info` (what the method reports with each reply).
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import torch

from empathkit.methods.base import Conversation, Generator, OnText, ShouldStop, controls_list
from empathkit.models.chat import fit_messages, render, with_system
from empathkit.models.generation import GenerationSettings, generate_texts
from empathkit.types import Controls, Example, Reply, TokenScore

SystemPrompt = Callable[..., "str | None"]  # (emotion=None, situation=None) -> system prompt


class CausalLMGenerator(Generator):
    """A (plain or PEFT-wrapped) causal LM answering with its chat template."""

    name = "causal-lm"

    def __init__(self, model, tokenizer, system_prompt: str | SystemPrompt | None = None,
                 info: dict[str, Any] | None = None, default_settings: GenerationSettings | None = None,
                 source_dir=None):
        super().__init__(info, default_settings, source_dir)
        self.model, self.tokenizer = model, tokenizer
        self._system = system_prompt if callable(system_prompt) else (lambda emotion=None, situation=None: system_prompt)

    # -- hooks -----------------------------------------------------------------------------------------------------
    def system_prompt(self, controls: Controls | None = None) -> str | None:
        c = controls or Controls()
        return self._system(emotion=c.emotion, situation=c.situation)

    def resolve_controls(self, conversations: Sequence[Conversation], controls: list[Controls]) -> list[Controls]:
        return controls

    def conditioning(self, controls: Sequence[Controls]) -> ContextManager:
        return contextlib.nullcontext()

    def reply_info(self, controls: Controls) -> dict[str, Any]:
        return {}

    # -- prompts ---------------------------------------------------------------------------------------------------
    def prompt(self, messages: Conversation, controls: Controls | None, settings: GenerationSettings) -> str:
        msgs = with_system(messages, self.system_prompt(controls))
        return render(self.tokenizer, fit_messages(self.tokenizer, msgs, settings.max_prompt_tokens))

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def step_prompts(self, conversations, settings, controls) -> list[tuple[str, dict]]:
        """(prompt, reply info) per conversation exactly as ``chat`` builds them (continuous batching decodes them)."""
        convs = [list(c) for c in conversations]
        ctrls = self.resolve_controls(convs, controls_list(len(convs), controls))
        return [(self.prompt(m, c, settings), self.reply_info(c)) for m, c in zip(convs, ctrls)]

    def step_decoder(self):
        """A StepDecoder unless a subclass needs whole-batch generation: its own ``chat`` (REG's causal generator
        fills attributes there) or a per-batch ``conditioning`` (ECG-LoRA's gate); encoder–decoders and beam search
        (``generation.num_beams > 1``) never."""
        from empathkit.models.backbones import is_encoder_decoder
        from empathkit.models.stepping import StepDecoder

        own = type(self)
        if (own.chat is not CausalLMGenerator.chat or own.conditioning is not CausalLMGenerator.conditioning
                or is_encoder_decoder(self.model) or self.default_settings.num_beams > 1):
            return None
        return StepDecoder(self.model, self.tokenizer, self.step_prompts)

    # -- the interface ---------------------------------------------------------------------------------------------
    def chat(self, conversations, settings=None, controls=None, *, on_text: OnText | None = None,
             should_stop: ShouldStop | None = None, progress: bool = False, desc: str | None = None) -> list[Reply]:
        s = settings or self.default_settings
        convs = [list(c) for c in conversations]
        ctrls = self.resolve_controls(convs, controls_list(len(convs), controls))
        prompts = [self.prompt(m, c, s) for m, c in zip(convs, ctrls)]
        outs = generate_texts(self.model, self.tokenizer, prompts, s,
                              batch_context=lambda idx: self.conditioning([ctrls[i] for i in idx]),
                              progress=progress, desc=desc or f"generating ({self.name})", on_text=on_text,
                              should_stop=should_stop)
        return [Reply(o.text, o.prompt_tokens, o.new_tokens, o.finish_reason, self.reply_info(c))
                for o, c in zip(outs, ctrls)]

    @torch.inference_mode()
    def score(self, examples: Sequence[Example], controls=None, batch_size: int = 8, progress: bool = False,
              max_length: int = 512) -> list[TokenScore]:
        """Sum of the reference's token NLLs (its text and end-of-turn token, as in training) given the prompt."""
        from tqdm.auto import tqdm

        from empathkit.models.encoding import IGNORE, encode_example

        ctrls = self.example_controls(examples, controls)
        rows = [encode_example(self.tokenizer, ex, self.system_prompt(c), max_length) for ex, c in zip(examples, ctrls)]
        dev = next(self.model.parameters()).device
        out: list[TokenScore] = []
        for b in tqdm(range(0, len(rows), batch_size), desc=f"scoring ({self.name})", disable=not progress):
            chunk, cc = rows[b:b + batch_size], ctrls[b:b + batch_size]
            n = max(len(r["input_ids"]) for r in chunk)
            pad = self.tokenizer.pad_token_id or 0
            ids = torch.tensor([r["input_ids"] + [pad] * (n - len(r["input_ids"])) for r in chunk], device=dev)
            mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (n - len(r["input_ids"])) for r in chunk], device=dev)
            labels = torch.tensor([r["labels"] + [IGNORE] * (n - len(r["labels"])) for r in chunk], device=dev)
            with self.conditioning(cc):
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            lp = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=IGNORE,
                                                   reduction="none")
            valid = (labels[:, 1:] != IGNORE)
            for row in range(len(chunk)):
                out.append(TokenScore(float(lp[row][valid[row]].sum()), int(valid[row].sum())))
        return out


class RunGenerator(CausalLMGenerator):
    """A causal LM trained by SFT or EmPO: system prompt from the run's ``model`` config (template / fixed)."""

    def __init__(self, model, tokenizer, model_config, name: str, info: dict[str, Any] | None = None,
                 source_dir=None):
        self.name = name
        # the same builder the training rows were encoded with (training.config.LMModelConfig.prompt_builder)
        super().__init__(model, tokenizer, model_config.prompt_builder(), info=info, source_dir=source_dir)
        self.config = model_config
