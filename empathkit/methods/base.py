"""The method interface: what every method provides (a :class:`Generator`) and how it is registered (a
:class:`MethodSpec`). Serving, chat, evaluation, reports, the demo and the CLI only talk to ``Generator``.

A ``Generator`` answers four questions for any kind of model (causal LM, encoder–decoder, a model of its own):

- :meth:`Generator.chat` — replies to OpenAI-style conversations, batched, with optional per-row streaming
  (``on_text(row, delta)``) and per-row cancellation (``should_stop(row)``); returns :class:`~empathkit.types.Reply`
  (text, prompt/completion tokens, finish reason, method info such as the emotion, gate or exemplars used);
- :meth:`Generator.generate` — predictions for dataset ``Example`` s (built on ``chat``: the example's context becomes
  the conversation, its gold emotion / situation / exemplars become default ``Controls``);
- :meth:`Generator.stream` — a synchronous iterator over :class:`StreamEvent` s (text deltas, then the replies);
- :meth:`Generator.score` — the model's own per-token NLL of each example's reference (the "PPL" of MoEL,
  ReflectDiffu and REG).

Per-example conditioning travels as generic :class:`~empathkit.types.Controls` (emotion, ECG-LoRA gate, exemplars,
intent, situation): a method reads the fields it understands and ignores the others.
"""

from __future__ import annotations

import dataclasses
import queue
import shutil
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from empathkit.models.chat import example_messages
from empathkit.models.generation import GenerationSettings, settings_dict
from empathkit.types import Controls, Example, Prediction, Reply, TokenScore

Conversation = list[dict[str, str]]
OnText = Callable[[int, str], None]
ShouldStop = Callable[[int], bool]


@dataclass
class StreamEvent:
    """One event of :meth:`Generator.stream`: a text ``delta`` of row ``index``, or (``reply`` set) its final reply."""

    index: int
    delta: str = ""
    reply: Reply | None = None


def merge_controls(base: Controls, given: Controls | None) -> Controls:
    """``base`` with every field ``given`` sets (not None / not empty) taking precedence."""
    if given is None:
        return base
    upd = {f.name: getattr(given, f.name) for f in dataclasses.fields(Controls)
           if getattr(given, f.name) not in (None, (), {})}
    return dataclasses.replace(base, **upd)


def controls_list(n: int, controls: Sequence[Controls | None] | None) -> list[Controls]:
    if controls is None:
        return [Controls() for _ in range(n)]
    if len(controls) != n:
        raise ValueError(f"{len(controls)} controls for {n} inputs")
    return [c if c is not None else Controls() for c in controls]


class Generator(ABC):
    """A loaded model that turns conversations (or dataset examples) into replies. See the module docstring."""

    name = "base"

    def __init__(self, info: dict[str, Any] | None = None, default_settings: GenerationSettings | None = None,
                 source_dir: str | Path | None = None):
        self.info = dict(info or {})
        self.default_settings = default_settings or GenerationSettings()
        self.source_dir = Path(source_dir) if source_dir is not None else None  # the run dir it was loaded from

    # -- the interface ---------------------------------------------------------------------------------------------
    @abstractmethod
    def chat(self, conversations: Sequence[Conversation], settings: GenerationSettings | None = None,
             controls: Sequence[Controls | None] | None = None, *, on_text: OnText | None = None,
             should_stop: ShouldStop | None = None, progress: bool = False, desc: str | None = None) -> list[Reply]:
        """One reply per conversation, batched; ``on_text(row, delta)`` streams rows, ``should_stop(row)`` ends one."""

    @abstractmethod
    def score(self, examples: Sequence[Example], controls: Sequence[Controls | None] | None = None,
              batch_size: int = 8, progress: bool = False) -> list[TokenScore]:
        """The model's own NLL of each example's reference given its context and controls (teacher forcing)."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the model's own tokenisation (request bounds, usage reports)."""

    def step_decoder(self):
        """Step-level decoding for continuous batching (``serving/continuous.py``): a
        :class:`~empathkit.models.stepping.StepDecoder` over this generator's model and prompts, or ``None`` when its
        generation is not a plain causal-LM step (the server then micro-batches whole ``chat`` calls)."""
        return None

    # -- built on the interface --------------------------------------------------------------------------------------
    def example_controls(self, examples: Sequence[Example],
                         controls: Sequence[Controls | None] | None = None) -> list[Controls]:
        """Default controls of dataset examples (gold emotion, situation, annotated exemplars / intent) merged with
        the caller's."""
        given = controls_list(len(examples), controls)
        return [merge_controls(Controls.from_example(ex), c) for ex, c in zip(examples, given)]

    def example_conversation(self, ex: Example) -> Conversation:
        return example_messages(ex)

    def generate(self, examples: Sequence[Example], settings: GenerationSettings | None = None,
                 controls: Sequence[Controls | None] | None = None, progress: bool = True) -> list[Prediction]:
        s = settings or self.default_settings
        ctrls = self.example_controls(examples, controls)
        replies = self.chat([self.example_conversation(ex) for ex in examples], s, ctrls, progress=progress,
                            desc=f"generating ({self.name})")
        sd = settings_dict(s) | {"method": self.name} | self.info
        out = []
        for ex, r in zip(examples, replies):
            p = Prediction.from_example(ex, r.text, sd, prompt_tokens=r.prompt_tokens, new_tokens=r.completion_tokens,
                                        finish_reason=r.finish_reason, **r.info)
            out.append(p)
        return out

    def stream(self, conversations: Sequence[Conversation], settings: GenerationSettings | None = None,
               controls: Sequence[Controls | None] | None = None) -> Iterator[StreamEvent]:
        """Text deltas as they are generated (all rows in one batch), then one event per row with its reply.
        Closing the iterator early stops generation."""
        events: queue.Queue = queue.Queue()
        closed = threading.Event()
        done = object()

        def work():
            try:
                replies = self.chat(conversations, settings, controls, on_text=lambda i, d: events.put(StreamEvent(i, d)),
                                    should_stop=lambda i: closed.is_set())
                for i, r in enumerate(replies):
                    events.put(StreamEvent(i, reply=r))
            except BaseException as e:  # noqa: BLE001 — re-raised in the consumer
                events.put(e)
            events.put(done)

        t = threading.Thread(target=work, name=f"empathkit-stream-{self.name}", daemon=True)
        t.start()
        try:
            while (ev := events.get()) is not done:
                if isinstance(ev, BaseException):
                    raise ev
                yield ev
        finally:
            closed.set()
            t.join()

    def save(self, run_dir: str | Path) -> Path:
        """Write a run directory that ``empathkit.api.load_generator(run_dir=…)`` loads back to this generator.
        The default copies the run directory it was loaded from (without training checkpoints)."""
        if self.source_dir is None:
            raise NotImplementedError(f"{type(self).__name__} was not loaded from a run directory: override save()")
        from empathkit.runs import load_run_config, write_run_config

        dest = Path(run_dir)
        shutil.copytree(self.source_dir, dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoints", "checkpoint-*", "predictions.jsonl"))
        config = getattr(self, "config", None)
        if hasattr(config, "model_dump"):  # inference-time overrides (e.g. a forced ECG-LoRA gate) are kept
            write_run_config(dest, load_run_config(dest) | {"model": config.model_dump()})
        return dest


@dataclass
class MethodSpec:
    """A registered method: ``config_cls`` (a pydantic class with ``model`` and ``train`` sections for trainable
    methods, the ``model:`` section itself for zero-shot ones; ``api.train`` / ``api.method_config`` validate a run
    config against it before any work), ``load(model_config, run_dir) -> Generator`` and
    ``train(cfg, run_dir, progress) -> run_dir`` (``None`` for training-free methods)."""

    name: str
    config_cls: type
    load: Callable[..., Generator]
    train: Callable[..., Path] | None = None
    description: str = ""
