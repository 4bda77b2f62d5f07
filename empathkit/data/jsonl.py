"""The documented JSONL dialogue format (one dialogue per line) for bringing your own data.

Each line: ``{"id": str, "emotion": str, "situation": str, "turns": [{"role": "speaker"|"listener", "text": str}, …],
"split": "train"|"valid"|"test" (optional), "profile": {"emotion_type": …, "problem_type": …, "situation": …}
(optional)}``. ``profile`` carries the seeker profile of the NLPCC 2025 Task 8 personalised emotional-support task.
A turn may carry an ``annotation``: ``{"tokens": [...], "reason_tags": ["<em>"|"<noem>", ...] (one per token),
"intent": str, "emotion": str, "annotator": "<name>@<version>"}`` (all optional; see ``empathkit.types``).

Every line is validated against a strict pydantic schema (:class:`DialogueLine`) and any problem stops the read with
``file:line: field 'x': …`` (docs/data.md lists every case): unknown fields (with a did-you-mean: a typo such as
``situaton`` must not lose the situation), unknown split names, empty or whitespace-only text, NUL bytes, null or
non-string ids (an integer id is read as its decimal string), NaN / Infinity, nesting deeper than
:data:`MAX_DEPTH`. A dialogue without ``split`` (absent, null or ``""``) belongs to :data:`DEFAULT_SPLIT` only —
never to every split — and asking for a split no dialogue has is an error that names the splits the file holds.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Iterable, Literal

from pydantic import BaseModel, ValidationError, field_validator

from empathkit.data.emotions import EMOTION_TO_ID
from empathkit.errors import DataError
from empathkit.types import Dialogue, Turn, TurnAnnotation

PROFILE_FIELDS = ("emotion_type", "problem_type", "situation")
ANNOTATION_FIELDS = ("tokens", "reason_tags", "intent", "emotion", "annotator")
SPLITS = ("train", "valid", "test")
DEFAULT_SPLIT = "test"  # the split of a dialogue without "split": your own data is evaluated, never trained on unasked
MAX_DEPTH = 8  # the format nests 5 levels (line → turns → turn → annotation → tokens); deeper is not a dialogue
STRICT = {"extra": "forbid", "strict": True}


def _visible(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty or whitespace only")
    if "\x00" in v:
        raise ValueError("contains a NUL byte")
    return v


class AnnotationLine(BaseModel):
    model_config = STRICT

    tokens: list[str] = []
    reason_tags: list[str] = []
    intent: str | None = None
    emotion: str | None = None
    annotator: str | None = None


class TurnLine(BaseModel):
    model_config = STRICT

    role: Literal["speaker", "listener"]
    text: str
    annotation: AnnotationLine | None = None

    _text = field_validator("text")(lambda v: _visible(v))


class ProfileLine(BaseModel):
    model_config = STRICT

    emotion_type: str | None = None
    problem_type: str | None = None
    situation: str | None = None


class DialogueLine(BaseModel):
    model_config = STRICT

    id: str | int
    emotion: str
    situation: str = ""
    turns: list[TurnLine]
    split: str | None = None
    profile: ProfileLine | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: object) -> str | int:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise ValueError(f"must be a string (or an integer), got {'null' if v is None else type(v).__name__}")
        return _visible(v) if isinstance(v, str) else v

    @field_validator("emotion")
    @classmethod
    def _emotion(cls, v: str) -> str:
        if v.strip().lower() not in EMOTION_TO_ID:
            raise ValueError(f"unknown emotion {v!r} (not one of the 32 ED labels)")
        return v.strip().lower()

    @field_validator("turns")
    @classmethod
    def _turns(cls, v: list[TurnLine]) -> list[TurnLine]:
        if not v:
            raise ValueError("must be a non-empty list")
        return v

    @field_validator("split")
    @classmethod
    def _split(cls, v: str | None) -> str | None:
        if v and v not in SPLITS:
            close = difflib.get_close_matches(v, SPLITS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown split {v!r} ({', '.join(SPLITS)}){hint}")
        return v or None


def _path(loc: tuple) -> str:
    out = ""
    for x in loc:
        out += f"[{x}]" if isinstance(x, int) else (f".{x}" if out else str(x))
    return out


def _model_fields(loc: tuple) -> tuple[str, ...]:
    """The allowed keys at ``loc`` (for the did-you-mean of an unknown field)."""
    named = [x for x in loc[:-1] if isinstance(x, str)]
    if not named:
        return tuple(DialogueLine.model_fields)
    return {"turns": tuple(TurnLine.model_fields), "profile": PROFILE_FIELDS, "annotation": ANNOTATION_FIELDS}.get(
        named[-1], ())


def _scan(obj: object, path: str, depth: int, err) -> None:
    """Depth and non-finite numbers, anywhere in the line (before the schema, which would only say 'wrong type')."""
    if depth > MAX_DEPTH:
        raise err(f"nested deeper than {MAX_DEPTH} levels", path or None)
    if isinstance(obj, float) and not math.isfinite(obj):
        raise err(f"{obj!r} is not a finite number (NaN / Infinity are not JSON values the format accepts)",
                  path or None)
    if isinstance(obj, dict):
        for k, v in obj.items():
            _scan(v, f"{path}.{k}" if path else str(k), depth + 1, err)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _scan(v, f"{path}[{i}]", depth + 1, err)


def parse_dialogue(obj: object, source: str, lineno: int) -> Dialogue:
    def err(msg: str, field: str | None = None) -> DataError:
        return DataError(msg, file=source, line=lineno, field=field)

    if not isinstance(obj, dict):
        raise err("each line must be a JSON object")
    _scan(obj, "", 0, err)
    try:
        line = DialogueLine.model_validate(obj)
    except ValidationError as e:
        first = e.errors()[0]
        loc, kind = tuple(first["loc"]), first["type"]
        field = _path(loc) or None
        if kind == "missing":
            raise err("missing required field", field) from None
        if kind == "extra_forbidden":
            allowed = _model_fields(loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise err(f"unknown field; {hint}allowed: {', '.join(allowed)}", field) from None
        raise err(str(first["msg"]).removeprefix("Value error, "), field) from None
    turns = []
    for i, t in enumerate(line.turns):
        turns.append(Turn(t.role, t.text.strip(), _annotation(t.annotation, err, f"turns[{i}].annotation")))
    profile = {k: v for k, v in (line.profile.model_dump() if line.profile else {}).items() if v is not None}
    return Dialogue(id=str(line.id), emotion=line.emotion, situation=line.situation.strip(), turns=tuple(turns),
                    split=line.split or DEFAULT_SPLIT, profile=profile, source=f"{source}:{lineno}")


def _annotation(a: AnnotationLine | None, err, field: str) -> TurnAnnotation | None:
    if a is None:
        return None
    try:
        return TurnAnnotation.from_json(a.model_dump(exclude_none=True))
    except ValueError as e:  # tags not aligned with tokens, unknown tag
        raise err(str(e), f"{field}.reason_tags") from None


def _iter_rows(p: Path):
    """``runs.iter_jsonl`` with a line too deeply nested for Python's JSON parser reported as a DataError."""
    from empathkit.runs import iter_jsonl

    last = 0
    try:
        for lineno, obj in iter_jsonl(p):
            last = lineno
            yield lineno, obj
    except RecursionError:
        with p.open("rb") as f:
            bad = next(n for n, raw in enumerate(f, start=1) if n > last and raw.strip())
        raise DataError(f"nested deeper than {MAX_DEPTH} levels", file=str(p), line=bad) from None


def read_jsonl(path: str | Path, split: str | None = None) -> list[Dialogue]:
    """Dialogues of ``split`` (all of them when None); a dialogue without a split is in :data:`DEFAULT_SPLIT`."""
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r} ({', '.join(SPLITS)})")
    p = Path(path)
    out: list[Dialogue] = []
    seen: dict[str, int] = {}
    counts: dict[str, int] = {}
    for lineno, obj in _iter_rows(p):
        d = parse_dialogue(obj, str(p), lineno)
        if d.id in seen:
            raise DataError(f"duplicated dialogue id {d.id!r} (first on line {seen[d.id]})", file=str(p),
                            line=lineno, field="id")
        seen[d.id] = lineno
        counts[d.split] = counts.get(d.split, 0) + 1
        if split is None or d.split == split:
            out.append(d)
    if not seen:
        raise DataError("file is empty", file=str(p), line=1)
    if not out:
        held = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        raise DataError(f"no dialogue has split {split!r} (the file holds {held}; a dialogue without 'split' is in "
                        f"{DEFAULT_SPLIT!r})", file=str(p), field="split")
    return out


def write_jsonl(dialogues: Iterable[Dialogue], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for d in dialogues:
            obj = {"id": d.id, "emotion": d.emotion, "situation": d.situation,
                   "turns": [{"role": t.role, "text": t.text} | ({"annotation": t.annotation.to_json()}
                                                               if t.annotation else {}) for t in d.turns]}
            if d.split:
                obj["split"] = d.split
            if d.profile:
                obj["profile"] = d.profile
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
