"""Terminal chat: a multi-turn conversation with any ``Generator``, the detected emotion of each user turn, the crisis
safety layer, and commands to force the emotion or the ECG-LoRA gate.

:class:`ChatSession` holds the logic (testable without a terminal); :func:`run_terminal` is the rich I/O loop.
History is trimmed after every turn with ``empathkit.models.chat.fit_messages`` so the rendered prompt (system prompt
included) stays within ``max_prompt_tokens``; the oldest turns go first, the latest user turn is always kept.

Commands: ``/emotion <label|auto|none>``, ``/gate <0..1|auto>``, ``/reset``, ``/history``, ``/help``, ``/quit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from empathkit.data.emotions import EMOTIONS
from empathkit.methods.base import Generator
from empathkit.models.chat import fit_messages
from empathkit.models.generation import GenerationSettings
from empathkit.types import Controls
from empathkit.serving.emotion import NONE, EmotionDetector
from empathkit.serving.safety import SafetyLayer, SafetyResult

HELP = """commands:
  /emotion <label>   force the user's emotion (one of the 32 ED labels); '/emotion auto' = detect, '/emotion none'
  /gate <0..1>       force the ECG-LoRA emotion gate (other methods ignore it); '/gate auto' = let the method decide
  /reset             forget the conversation
  /history           show what the model currently sees
  /help              this text
  /quit              leave"""


@dataclass
class ChatReply:
    text: str
    emotion: str
    emotion_prob: float | None
    emotion_source: str  # "forced" | "classifier" | "none"
    safety: SafetyResult


class QuitChat(Exception):
    pass


class ChatSession:
    def __init__(self, generator: Generator, settings: GenerationSettings | None = None,
                 detector: EmotionDetector | None = None, safety: SafetyLayer | None = None):
        self.generator = generator
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
    def _emotion(self, text: str) -> tuple[str, float | None, str]:
        if self.forced_emotion is not None:
            return self.forced_emotion, None, "forced"
        (label, prob), = self.detector.detect([text])
        return label, prob, "classifier" if self.detector.available else "none"

    def respond(self, text: str) -> ChatReply:
        text = text.strip()
        msgs = self.history + [{"role": "user", "content": text}]
        emo, prob, src = self._emotion(text)
        check = self.safety.check(text)
        if check.flagged:
            reply = self.safety.reply(check)
        else:
            ctl = Controls(emotion=None if emo == NONE else emo, emotion_source=src, gate=self.gate)
            reply = self.generator.chat([msgs], self.settings, [ctl])[0].text
        self.history = self._fit(msgs + [{"role": "assistant", "content": reply}])
        return ChatReply(reply, emo, prob, src, check)

    def _fit(self, msgs: list[dict[str, str]]) -> list[dict[str, str]]:
        sp = self.generator.system_prompt() if hasattr(self.generator, "system_prompt") else None
        system = [{"role": "system", "content": sp}] if sp else []
        fitted = fit_messages(self.generator.tokenizer, system + msgs, self.settings.max_prompt_tokens)
        rest = [m for m in fitted if m["role"] != "system"]
        while rest and rest[0]["role"] != "user":
            rest = rest[1:]
        return rest if len(rest) >= 2 else msgs[-2:]  # always keep the latest exchange


def run_terminal(session: ChatSession, console=None) -> None:
    """The interactive loop (rich). Ctrl-D / Ctrl-C / ``/quit`` leave."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console()
    console.print(f"[bold]empathkit chat[/] — method [cyan]{session.generator.name}[/]; type /help for commands, "
                  "/quit to leave.")
    if not session.detector.available:
        console.print("[dim]no emotion classifier trained: the detected emotion is shown as 'none' "
                      "(see `empathkit classifiers --help` to train one; force one with /emotion sad)[/]")
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
        with console.status("thinking …"):
            reply = session.respond(line)
        p = f" {reply.emotion_prob:.2f}" if reply.emotion_prob is not None else ""
        gate = f", gate {session.gate:g}" if session.gate is not None else ""
        console.print(f"[dim]  emotion: {escape(reply.emotion)}{p} ({reply.emotion_source}){gate}[/]")
        if reply.safety.flagged:
            console.print(f"[bold yellow]bot[/] [yellow](safety: {reply.safety.category})[/] > "
                          f"{escape(reply.text)}")
        else:
            console.print(f"[bold blue]bot[/] > {escape(reply.text)}")
