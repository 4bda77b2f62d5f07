"""Terminal chat: a multi-turn conversation with any ``Generator``, the detected emotion of each user turn, the crisis
safety layer, and commands to force the emotion or the ECG-LoRA gate.

:class:`ChatSession` holds the logic (testable without a terminal); :func:`run_terminal` is the rich I/O loop, which
prints the reply as it is generated (``Generator.chat(on_text=…)``). The emotion is detected over the whole
conversation (``EmotionDetector.detect([conversation_context(messages)])``, the convention the classifier was
trained with), like the server does.

History is trimmed after every turn so it stays within ``max_prompt_tokens``: the oldest turns go first, the latest
exchange is always kept. Sizes come from ``Generator.count_tokens`` plus :data:`TURN_OVERHEAD` template tokens per
message (role markers, end of turn) and :data:`PROMPT_OVERHEAD` for the generation prompt: an estimate, since the
chat template belongs to the generator (a causal-LM generator fits the rendered prompt exactly before generating).

Replies cut by the token budget (``finish_reason == "length"``) are trimmed to their last complete sentence
(:func:`empathkit.models.trim.trim_to_sentence`; ``ChatSession(trim=False)`` keeps them whole); the reply's ``info``
then holds ``trim`` (the untrimmed text and the finish reason), like the server's metadata. While streaming, the
last :data:`~empathkit.serving.batcher.HOLD_TOKENS` of the budget are printed a sentence at a time, so the dropped
tail is normally never shown.

Commands: ``/emotion <label|auto|none>``, ``/gate <0..1|auto>``, ``/reset``, ``/history``, ``/help``, ``/quit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from empathkit.data.emotions import EMOTIONS
from empathkit.methods.base import Generator
from empathkit.classifiers.detect import HOW_TO_GET_ONE
from empathkit.models.generation import GenerationSettings
from empathkit.models.trim import trim_to_sentence
from empathkit.serving.batcher import StopText
from empathkit.serving.emotion import NONE, EmotionDetector, conversation_context
from empathkit.serving.safety import SafetyLayer, SafetyResult
from empathkit.types import Controls

# template tokens around one message (ChatML, Llama 3 and Gemma use 5) and the generation prompt (3–4)
TURN_OVERHEAD = 5
PROMPT_OVERHEAD = 4

HELP = """commands:
  /emotion <label>   force the user's emotion (one of the 32 ED labels); '/emotion auto' = detect, '/emotion none'
  /gate <0..1>       force the ECG-LoRA emotion gate (other methods ignore it); '/gate auto' = let the method decide
  /reset             forget the conversation
  /history           show what the model currently sees
  /help              this text
  /quit              leave"""


@dataclass
class TurnStart:
    """What is known before the model answers: the user's emotion and the safety check."""

    emotion: str
    emotion_prob: float | None
    emotion_source: str  # "forced" | "classifier" | "none"
    safety: SafetyResult


@dataclass
class ChatReply:
    text: str
    emotion: str
    emotion_prob: float | None
    emotion_source: str  # "forced" | "classifier" | "none"
    safety: SafetyResult
    info: dict[str, Any] = field(default_factory=dict)  # Reply.info: what the method did (gate, predicted emotion…)
    finish_reason: str = "stop"


class QuitChat(Exception):
    pass


class ChatSession:
    def __init__(self, generator: Generator, settings: GenerationSettings | None = None,
                 detector: EmotionDetector | None = None, safety: SafetyLayer | None = None, trim: bool = True):
        self.generator = generator
        self.trim = trim  # cut replies that hit the token budget back to their last complete sentence
        self.settings = settings or generator.default_settings
        self.detector = detector or EmotionDetector(None)
        self.safety = safety or SafetyLayer()
        self.history: list[dict[str, str]] = []
        self.forced_emotion: str | None = None  # a label or "none"
        self.gate: float | None = None

    # -- commands ------------------------------------------------------------------------------------------------
    def command(self, line: str) -> str:
        """Run a ``/command``; returns the text to show. Raises :class:`QuitChat` on /quit."""
        cmd, _, arg = line.strip().partition(" ")
        cmd, arg = cmd.lower(), arg.strip().lower()
        if cmd in ("/quit", "/exit", "/q"):
            raise QuitChat
        if cmd == "/reset":
            self.history.clear()
            return "conversation reset"
        if cmd == "/help":
            return HELP
        if cmd == "/history":
            return "\n".join(f"{m['role']}: {m['content']}" for m in self.history) or "(empty)"
        if cmd == "/emotion":
            if arg in ("", "auto"):
                self.forced_emotion = None
                return "emotion: detected automatically" + ("" if self.detector.available else
                                                              " (no emotion classifier trained: shown as none)")
            if arg != NONE and arg not in EMOTIONS:
                return f"unknown emotion {arg!r}; use auto, none, or one of: {', '.join(EMOTIONS)}"
            self.forced_emotion = arg
            return f"emotion forced to {arg}"
        if cmd == "/gate":
            if arg in ("", "auto"):
                self.gate = None
                return "gate: decided by the method"
            try:
                g = float(arg)
            except ValueError:
                return f"gate must be a number between 0 and 1, got {arg!r}"
            if not 0.0 <= g <= 1.0:
                return f"gate must be between 0 and 1, got {g}"
            self.gate = g
            return f"gate forced to {g:g}" + ("" if self.generator.name.startswith("ecg") else
                                               f" (method '{self.generator.name}' has no gate: ignored)")
        return f"unknown command {cmd!r}\n{HELP}"

    # -- a turn --------------------------------------------------------------------------------------------------
    def _emotion(self, msgs: list[dict[str, str]]) -> tuple[str, float | None, str]:
        if self.forced_emotion is not None:
            return self.forced_emotion, None, "forced"
        (g,) = self.detector.detect([conversation_context(msgs)])
        return g.label, g.prob, "classifier" if g.source.startswith("classifier") else "none"

    def controls(self, emotion: str, source: str) -> Controls:
        if emotion == NONE:
            return Controls(emotion_source="request" if source == "forced" else None, gate=self.gate)
        return Controls(emotion=emotion, emotion_source="request" if source == "forced" else source, gate=self.gate)

    def respond(self, text: str, on_text: Callable[[str], None] | None = None,
                on_start: Callable[[TurnStart], None] | None = None) -> ChatReply:
        """One turn. ``on_start(TurnStart)`` is called before the model runs (emotion, safety);
        ``on_text(delta)`` with the reply's text as it is generated (not for safety replies)."""
        text = text.strip()
        msgs = self.history + [{"role": "user", "content": text}]
        emo, prob, src = self._emotion(msgs)
        check = self.safety.check(text)
        if on_start is not None:
            on_start(TurnStart(emo, prob, src, check))
        info: dict[str, Any] = {}
        finish = "stop"
        if check.flagged:
            reply = self.safety.reply(check)
        else:
            stream = (lambda i, d: on_text(d)) if on_text is not None else None
            (r,) = self.generator.chat([msgs], self.settings, [self.controls(emo, src)], on_text=stream)
            reply, info, finish = r.text, dict(r.info), r.finish_reason
            if self.trim and finish == "length":
                t = trim_to_sentence(reply)
                if t.changed:
                    info["trim"] = {"text": t.text, "untrimmed_text": reply, "removed": t.removed,
                                    "finish_reason": "length", "marked": t.marked}
                    reply = t.text
        self.history = self._fit(msgs + [{"role": "assistant", "content": reply}])
        return ChatReply(reply, emo, prob, src, check, info, finish)

    def _system_prompt(self) -> str | None:
        fn = getattr(self.generator, "system_prompt", None)  # a CausalLMGenerator hook, not part of the interface
        try:
            return fn() if callable(fn) else None
        except Exception:  # noqa: BLE001 - only used for the size estimate
            return None

    def _fit(self, msgs: list[dict[str, str]]) -> list[dict[str, str]]:
        budget = self.settings.max_prompt_tokens
        if not budget:
            return msgs
        sp = self._system_prompt()
        fixed = PROMPT_OVERHEAD + (self.generator.count_tokens(sp) + TURN_OVERHEAD if sp else 0)
        rest = list(msgs)
        sizes = [self.generator.count_tokens(m["content"]) + TURN_OVERHEAD for m in rest]
        while len(rest) > 2 and fixed + sum(sizes) > budget:
            rest, sizes = rest[1:], sizes[1:]
            while len(rest) > 2 and rest[0]["role"] != "user":
                rest, sizes = rest[1:], sizes[1:]
        return rest  # always keeps the latest exchange


def run_terminal(session: ChatSession, console=None) -> None:
    """The interactive loop (rich); replies are printed as they are generated. Ctrl-D, ``/quit`` or Ctrl-C at the
    prompt leave; Ctrl-C while a reply is being written drops that turn."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    console.print(f"[bold]empathkit chat[/] — method [cyan]{session.generator.name}[/]; type /help for commands, "
                  "/quit to leave.")
    if not session.detector.available:
        console.print(f"[dim]{escape(HOW_TO_GET_ONE)}; force one with /emotion sad[/]")
    else:
        console.print(f"[dim]emotion: {escape((session.detector.description or {}).get('summary', ''))}[/]")
    while True:
        try:
            line = console.input("[bold green]you[/] > ")
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not line.strip():
            continue
        if line.strip().startswith("/"):
            try:
                console.print(f"[dim]{escape(session.command(line))}[/]")
            except QuitChat:
                break
            continue
        # holds back trailing whitespace (the final reply drops it) and, near the budget, unfinished sentences
        shown = StopText(budget=session.settings.max_new_tokens if session.trim else None)

        def start(t: TurnStart) -> None:
            p = f" {t.emotion_prob:.2f}" if t.emotion_prob is not None else ""
            gate = f", gate {session.gate:g}" if session.gate is not None else ""
            console.print(f"[dim]  emotion: {escape(t.emotion)}{p} ({t.emotion_source}){gate}[/]")
            if t.safety.flagged:
                console.print(f"[bold yellow]bot[/] [yellow](safety: {t.safety.category})[/] > ", end="")
            else:
                console.print("[bold blue]bot[/] > ", end="")

        def show(delta: str) -> None:
            out = shown.feed(delta)
            if out:
                console.print(out, end="", markup=False, highlight=False, soft_wrap=True)

        try:
            reply = session.respond(line, on_text=show, on_start=start)
        except KeyboardInterrupt:
            console.print("\n[dim](interrupted; this turn is forgotten)[/]")
            continue
        sent = shown.text[:shown.sent]
        rest = reply.text[len(sent):] if reply.text.startswith(sent) else "\n" + reply.text
        console.print(rest, markup=False, highlight=False, soft_wrap=True)  # what was not streamed, and a newline
        if "trim" in reply.info:
            console.print("[dim]  (token budget reached: " + ("no complete sentence; marked with …" if
                          reply.info["trim"]["marked"] else "trimmed to the last complete sentence") + ")[/]")
        extra = {k: v for k, v in reply.info.items() if v is not None and k != "trim"}
        if extra:
            console.print("[dim]  " + escape(", ".join(f"{k}: {v:.2f}" if isinstance(v, float) else f"{k}: {v}"
                                                         for k, v in extra.items())) + "[/]")
