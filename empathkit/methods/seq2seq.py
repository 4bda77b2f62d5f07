"""Encoder–decoder generation (``method: seq2seq``): a zero-shot baseline on any Hugging Face seq2seq backbone
(FLAN-T5, T5, BART; ``backbone: flan-t5-base`` online, ``tiny-random-t5`` offline for tests), and — with
``fusion: fid`` — :class:`FiDGenerator`, Fusion-in-Decoder over the exemplars the caller gives, which REG builds on.
See docs/methods/seq2seq.md.

Encoder input — one flat text per conversation (like the causal methods' no-chat-template fallback)::

    {prefix}

    User: {oldest kept user turn}
    Assistant: {assistant turn}
    User: {last user turn}
    Assistant:

``prefix`` is the conversation's own system message when it has one, else the configured ``instruction`` plus
"The user feels {emotion}." (``use_emotion``, from :class:`~empathkit.types.Controls`) and "Situation: …"
(``use_situation``). Role labels separate the turns rather than ``</s>``: T5's tokenizer folds newlines into
spaces, ``</s>`` is plain text for tokenizers without that token, and an instruction followed by role-labelled
turns is an ordinary FLAN-style prompt.
The oldest turns are dropped (never the last user turn) until the text fits ``settings.max_prompt_tokens``; a last
turn still too long keeps its end (at least half the budget, so a long prefix cannot crowd it out). The decoder
writes the reply; its teacher-forced NLL is :meth:`Seq2SeqGenerator.score`.

FiD passages (:class:`FiDGenerator`): one per exemplar, ``"Exemplar: {response}\n" + the input above`` (the
exemplar first, so the text keeps ending with the ``Assistant:`` cue; each response cut to ``exemplar_tokens``).
No exemplar: one passage, the plain input, and the output equals :class:`Seq2SeqGenerator`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, Field

from empathkit.methods.base import Conversation, Generator, MethodSpec, OnText, ShouldStop, controls_list
from empathkit.models.generation import GenerationSettings, generate_texts
from empathkit.types import Controls, Example, Exemplar, Reply, TokenScore

DEFAULT_INSTRUCTION = ("Continue the conversation as the assistant: reply to the user with empathy, acknowledge "
                       "their feelings and respond to what they said.")


class Seq2SeqConfig(BaseModel):
    """``model:`` section of ``method: seq2seq``."""

    model_config = {"extra": "forbid"}

    backbone: str = Field("flan-t5-base", description="an encoder–decoder backbone name, HF id or local folder")
    dtype: str = Field("float32", description="weights dtype at load time")
    instruction: str | None = Field(DEFAULT_INSTRUCTION, description="prefix of every encoder input (None: none)")
    use_emotion: bool = Field(True, description="add 'The user feels {emotion}.' when the controls carry one")
    use_situation: bool = Field(False, description="add the ED situation text when the controls carry one")
    fusion: Literal["none", "fid"] = Field("none", description="'fid': Fusion-in-Decoder over the controls' "
                                                               "exemplars (FiDGenerator)")
    max_exemplars: int = Field(5, ge=1, description="fid: exemplars (passages) used per reply")
    exemplar_tokens: int = Field(64, ge=1, description="fid: tokens kept of each exemplar response")
    max_target_tokens: int = Field(128, ge=2, description="score: reference tokens scored (with EOS)")


def source_text(messages: Sequence[dict[str, str]], prefix: str | None = None) -> str:
    """The flat encoder input of a conversation (see the module docstring)."""
    turns = "".join(f"{m['role'].capitalize()}: {m['content']}\n" for m in messages if m["role"] != "system")
    return (f"{prefix}\n\n" if prefix else "") + turns + "Assistant:"


class Seq2SeqGenerator(Generator):
    """An encoder–decoder model answering from the flat dialogue text (the module docstring)."""

    name = "seq2seq"

    def __init__(self, model, tokenizer, config: Seq2SeqConfig | None = None, info: dict[str, Any] | None = None,
                 default_settings: GenerationSettings | None = None, source_dir=None):
        self.config = config or Seq2SeqConfig()
        super().__init__({"backbone": self.config.backbone} | (info or {}), default_settings, source_dir)
        self.model, self.tokenizer = model, tokenizer

    # -- encoder input -----------------------------------------------------------------------------------------------
    def prefix(self, messages: Conversation, controls: Controls) -> str | None:
        system = [m["content"] for m in messages if m["role"] == "system"]
        if system:
            return system[0]
        parts = [self.config.instruction or ""]
        if self.config.use_emotion and controls.emotion:
            parts.append(f"The user feels {controls.emotion}.")
        if self.config.use_situation and controls.situation:
            parts.append(f"Situation: {controls.situation}")
        return " ".join(p for p in parts if p) or None

    def source(self, messages: Conversation, controls: Controls, max_tokens: int | None) -> str:
        """The encoder input, fitted to ``max_tokens`` by dropping the oldest turns (never the last user turn)."""
        prefix = self.prefix(messages, controls)
        turns = [m for m in messages if m["role"] != "system"]
        text = source_text(turns, prefix)
        while max_tokens and len(turns) > 1 and self.count_tokens(text) > max_tokens:
            turns = turns[1:]
            while len(turns) > 1 and turns[0]["role"] != "user":
                turns = turns[1:]
            text = source_text(turns, prefix)
        over = self.count_tokens(text) - max_tokens if max_tokens else 0
        if over > 0 and turns:  # one turn left and still too long: keep its end (at least half the budget)
            ids = self.tokenizer(turns[-1]["content"], add_special_tokens=False)["input_ids"]
            keep = max(len(ids) - over, min(len(ids), max_tokens // 2))
            turns = [{"role": turns[-1]["role"], "content": self.tokenizer.decode(ids[len(ids) - keep:]).strip()}]
            text = source_text(turns, prefix)
        return text

    def passages(self, source: str, controls: Controls) -> list[str]:
        """The encoder inputs of one reply: just the source here (FiD: one per exemplar)."""
        return [source]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def reply_info(self, controls: Controls) -> dict[str, Any]:
        return {}

    # -- the interface -------------------------------------------------------------------------------------------------
    def chat(self, conversations, settings=None, controls=None, *, on_text: OnText | None = None,
             should_stop: ShouldStop | None = None, progress: bool = False, desc: str | None = None) -> list[Reply]:
        s = settings or self.default_settings
        ctrls = controls_list(len(conversations), controls)
        sources = [self.source(list(m), c, s.max_prompt_tokens) for m, c in zip(conversations, ctrls)]
        outs = generate_texts(self.model, self.tokenizer, sources, s, progress=progress,
                              desc=desc or f"generating ({self.name})", on_text=on_text, should_stop=should_stop)
        return [Reply(o.text, o.prompt_tokens, o.new_tokens, o.finish_reason, self.reply_info(c))
                for o, c in zip(outs, ctrls)]

    def score(self, examples: Sequence[Example], controls=None, batch_size: int = 8,
              progress: bool = False) -> list[TokenScore]:
        """Teacher-forced NLL of each reference (its tokens and EOS) on the decoder side, given the encoder input
        generation would use (``default_settings.max_prompt_tokens``)."""
        from empathkit.models.fid import fid_score

        ctrls = self.example_controls(examples, controls)
        budget = self.default_settings.max_prompt_tokens
        rows = [self.passages(self.source(self.example_conversation(ex), c, budget), c)
                for ex, c in zip(examples, ctrls)]
        return fid_score(self.model, self.tokenizer, rows, [ex.target for ex in examples], batch_size,
                         max_target_tokens=self.config.max_target_tokens)

    def save(self, run_dir: str | Path) -> Path:
        """``model/`` (weights + tokenizer, ``save_pretrained``) and ``config.yaml``: ``load_generator(run_dir=…)``
        loads it back."""
        from empathkit.runs import save_run_meta

        d = Path(run_dir)
        self.model.save_pretrained(d / "model")
        self.tokenizer.save_pretrained(d / "model")
        save_run_meta(d, {"method": "seq2seq", "model": self.config.model_dump()}, 0)
        return d


class FiDGenerator(Seq2SeqGenerator):
    """Fusion-in-Decoder (:mod:`empathkit.models.fid`) over ``Controls.exemplars`` — in :meth:`generate` an
    example's annotated exemplars — at most ``max_exemplars``; their ids are reported in ``Reply.info["exemplars"]``.
    A toy of REG: it retrieves nothing and trains nothing (REG adds both, training with ``fid_forward``).
    :meth:`score` is the seq2seq one over these passages."""

    name = "seq2seq-fid"

    def __init__(self, model, tokenizer, config=None, info=None, default_settings=None, source_dir=None):
        super().__init__(model, tokenizer, config, {"fusion": "fid"} | (info or {}), default_settings, source_dir)

    def exemplars(self, controls: Controls) -> list[Exemplar]:
        return list(controls.exemplars[:self.config.max_exemplars])

    def passages(self, source: str, controls: Controls) -> list[str]:
        out = []
        for ex in self.exemplars(controls):
            ids = self.tokenizer(ex.response, add_special_tokens=False)["input_ids"][:self.config.exemplar_tokens]
            out.append(f"Exemplar: {self.tokenizer.decode(ids).strip()}\n{source}")
        return out or [source]

    def reply_info(self, controls: Controls) -> dict[str, Any]:
        return {"exemplars": [e.id for e in self.exemplars(controls)]}

    def chat(self, conversations, settings=None, controls=None, *, on_text: OnText | None = None,
             should_stop: ShouldStop | None = None, progress: bool = False, desc: str | None = None) -> list[Reply]:
        from empathkit.models.fid import fid_generate

        s = settings or self.default_settings
        ctrls = controls_list(len(conversations), controls)
        rows = [self.passages(self.source(list(m), c, s.max_prompt_tokens), c) for m, c in zip(conversations, ctrls)]
        outs = fid_generate(self.model, self.tokenizer, rows, s, progress, desc or f"generating ({self.name})",
                            on_text=on_text, should_stop=should_stop)
        return [Reply(o.text, o.prompt_tokens, o.new_tokens, o.finish_reason, self.reply_info(c))
                for o, c in zip(outs, ctrls)]


def load(config: Seq2SeqConfig | dict | None = None, run_dir: str | Path | None = None, model=None,
         tokenizer=None) -> Seq2SeqGenerator:
    """A generator from the ``model`` config (zero-shot: the backbone as it is) or from a saved run directory
    (its ``model/`` weights). ``fusion: fid`` gives the Fusion-in-Decoder generator."""
    from empathkit.config import validate
    from empathkit.errors import ConfigError
    from empathkit.models.backbones import cached_backbone, is_encoder_decoder, load_backbone

    cfg = config if isinstance(config, Seq2SeqConfig) else validate(Seq2SeqConfig, config or {}, "model")
    if model is None:
        saved = Path(run_dir) / "model" if run_dir is not None else None
        if saved is not None and (saved / "config.json").is_file():
            model, tokenizer = load_backbone(str(saved), cfg.dtype)
        else:
            model, tokenizer = cached_backbone(cfg.backbone, cfg.dtype)
    if not is_encoder_decoder(model):
        raise ConfigError(f"backbone {cfg.backbone!r} is a decoder-only model: use method 'prompt' for it, or an "
                          "encoder–decoder backbone (flan-t5-base, t5-small, bart-base, tiny-random-t5)")
    cls = FiDGenerator if cfg.fusion == "fid" else Seq2SeqGenerator
    return cls(model, tokenizer, cfg, source_dir=run_dir)


SPEC = MethodSpec("seq2seq", Seq2SeqConfig, load=load, train=None,
                  description="zero-shot encoder–decoder baseline (FLAN-T5 / T5 / BART) on a flat dialogue input")
