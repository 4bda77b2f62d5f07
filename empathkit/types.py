"""Core value types shared by every method: small frozen dataclasses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["speaker", "listener"]


@dataclass(frozen=True)
class Turn:
    role: Role  # "speaker" = the person sharing a situation (seeker); "listener" = the empathetic responder
    text: str


@dataclass(frozen=True)
class Dialogue:
    id: str
    emotion: str  # one of the 32 ED labels (empathkit.data.emotions.EMOTIONS)
    situation: str
    turns: tuple[Turn, ...]
    split: str = ""
    # optional seeker profile (NLPCC 2025 Task 8 personalised support): emotion_type, problem_type, situation
    profile: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    source: str = ""  # file (and line) the dialogue came from, for error messages


@dataclass(frozen=True)
class Example:
    """One generation target: the context turns before a listener turn, and that turn as the reference."""

    id: str  # "<dialogue id>#<turn index of the target>"
    dialogue_id: str
    emotion: str
    situation: str
    context: tuple[Turn, ...]
    target: str
    profile: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def emotion_id(self) -> int:
        from empathkit.data.emotions import emotion_id

        return emotion_id(self.emotion)

    @property
    def last_user_turn(self) -> str:
        for turn in reversed(self.context):
            if turn.role == "speaker":
                return turn.text
        return ""


@dataclass
class Prediction:
    """One line of a predictions JSONL file."""

    id: str
    emotion: str
    context: list[str]
    reference: str
    prediction: str
    settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_example(cls, ex: Example, prediction: str, settings: dict[str, Any] | None = None, **extra: Any) -> "Prediction":
        return cls(
            id=ex.id,
            emotion=ex.emotion,
            context=[t.text for t in ex.context],
            reference=ex.target,
            prediction=prediction,
            settings=dict(settings or {}),
            extra=extra,
        )
