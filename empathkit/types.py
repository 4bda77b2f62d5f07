"""Core value types shared by every method: small frozen dataclasses.

- ``Turn`` / ``Dialogue`` come out of the data readers; ``Example`` is one generation target (context + reference).
- Annotations travel with them: a ``Turn`` may carry a :class:`TurnAnnotation` (tokens with emotion-reason tags, an
  intent, an emotion, and the annotator that produced it); an ``Example`` carries :class:`ExampleAnnotations`
  (the target turn's annotation, emotion attributes, retrieved exemplars). Predictions write them to JSONL as
  ``annotations`` so evaluation sees what the method saw.
- ``Controls`` is the per-example conditioning every ``Generator`` accepts (emotion, ECG-LoRA gate, exemplars,
  intent, situation); ``Reply`` is what ``Generator.chat`` returns; ``TokenScore`` what ``Generator.score`` returns.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["speaker", "listener"]
REASON_TAGS = ("<em>", "<noem>")


@dataclass(frozen=True)
class TurnAnnotation:
    """Per-turn / per-token annotations of one turn (ReflectDiffu's emotion-reason tags and intents, …)."""

    tokens: tuple[str, ...] = ()
    reason_tags: tuple[str, ...] = ()  # one per token: "<em>" | "<noem>"
    intent: str | None = None
    emotion: str | None = None
    annotator: str = ""  # "<name>@<version>" of whatever produced the annotation

    def __post_init__(self):
        if self.reason_tags and len(self.reason_tags) != len(self.tokens):
            raise ValueError(f"{len(self.reason_tags)} reason tags for {len(self.tokens)} tokens")
        bad = sorted(set(self.reason_tags) - set(REASON_TAGS))
        if bad:
            raise ValueError(f"unknown reason tag(s) {bad}; expected {list(REASON_TAGS)}")

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if v not in ((), None, "")}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TurnAnnotation":
        return cls(tokens=tuple(d.get("tokens", ())), reason_tags=tuple(d.get("reason_tags", ())),
                   intent=d.get("intent"), emotion=d.get("emotion"), annotator=d.get("annotator", ""))


@dataclass(frozen=True)
class Exemplar:
    """A retrieved example response (REG / LEMPEx): its corpus id, context, response, retrieval score, attributes."""

    id: str
    response: str
    context: tuple[str, ...] = ()
    score: float = 0.0
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "response": self.response, "context": list(self.context), "score": self.score,
                "attributes": dict(self.attributes)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Exemplar":
        return cls(id=str(d["id"]), response=d["response"], context=tuple(d.get("context", ())),
                   score=float(d.get("score", 0.0)), attributes=dict(d.get("attributes", {})))


@dataclass(frozen=True)
class Turn:
    role: Role  # "speaker" = the person sharing a situation (seeker); "listener" = the empathetic responder
    text: str
    annotation: TurnAnnotation | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class ExampleAnnotations:
    """What is known about an example beyond its text: the target turn's annotation (e.g. its intent label),
    emotion attributes (e.g. REG's sentiment / EPITOME levels) and retrieved exemplars."""

    target: TurnAnnotation | None = None
    attributes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    exemplars: tuple[Exemplar, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.target or self.attributes or self.exemplars)

    def to_json(self, context: tuple[Turn, ...] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {}
        turns = [t.annotation.to_json() if t.annotation else None for t in context]
        if any(turns):
            out["context"] = turns
        if self.target:
            out["target"] = self.target.to_json()
        if self.attributes:
            out["attributes"] = dict(self.attributes)
        if self.exemplars:
            out["exemplars"] = [e.to_json() for e in self.exemplars]
        return out


@dataclass(frozen=True)
class Controls:
    """Per-example conditioning a ``Generator`` accepts; ``None`` fields mean "the method decides"."""

    emotion: str | None = None  # the emotion label to condition on
    emotion_source: str | None = None  # where it came from: "gold" | "predicted" | "request" | "classifier"
    gate: float | None = None  # ECG-LoRA: a forced gate value
    exemplars: tuple[Exemplar, ...] = ()  # REG: exemplars to fuse
    intent: str | None = None  # ReflectDiffu: a forced intent
    situation: str | None = None  # ED situation text (prompt templates that use it)
    attributes: dict[str, Any] | None = field(default=None, compare=False, hash=False)  # REG: the query's emotion
    # attributes (sentiment / presence / interpretation / exploration levels)

    @classmethod
    def from_example(cls, ex: "Example") -> "Controls":
        return cls(emotion=ex.emotion or None, emotion_source="gold" if ex.emotion else None, exemplars=ex.annotations.exemplars, situation=ex.situation or None,
                   intent=ex.annotations.target.intent if ex.annotations.target else None,
                   attributes=dict(ex.annotations.attributes) or None)


@dataclass
class Reply:
    """One generated reply: text, token counts, why it ended, and what the method did (``info``)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"
    info: dict[str, Any] = field(default_factory=dict)  # e.g. emotion, gate, intent, exemplar ids


@dataclass
class TokenScore:
    """The model's own negative log-likelihood of a reference: ``nll`` summed over ``tokens`` target tokens."""

    nll: float
    tokens: int

    @property
    def mean_nll(self) -> float:
        return self.nll / max(self.tokens, 1)


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
    annotations: ExampleAnnotations = field(default_factory=ExampleAnnotations, compare=False, hash=False)

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
    annotations: dict[str, Any] = field(default_factory=dict)  # ExampleAnnotations.to_json() + method outputs

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["annotations"]:
            d.pop("annotations")  # keep files of methods without annotations as they were
        return d

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
            annotations=ex.annotations.to_json(ex.context),
        )
