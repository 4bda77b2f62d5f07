"""The documented JSONL dialogue format (one dialogue per line) for bringing your own data.

Each line: ``{"id": str, "emotion": str, "situation": str, "turns": [{"role": "speaker"|"listener", "text": str}, …],
"split": str (optional), "profile": {"emotion_type": …, "problem_type": …, "situation": …} (optional)}``.
``profile`` carries the seeker profile of the NLPCC 2025 Task 8 personalised emotional-support task.
A turn may carry an ``annotation``: ``{"tokens": [...], "reason_tags": ["<em>"|"<noem>", ...] (one per token),
"intent": str, "emotion": str, "annotator": "<name>@<version>"}`` (all optional; see ``empathkit.types``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from empathkit.data.emotions import EMOTION_TO_ID
from empathkit.errors import DataError
from empathkit.types import Dialogue, Turn, TurnAnnotation

PROFILE_FIELDS = ("emotion_type", "problem_type", "situation")


def parse_dialogue(obj: object, source: str, lineno: int) -> Dialogue:
    def err(msg: str, field: str | None = None) -> DataError:
        return DataError(msg, file=source, line=lineno, field=field)

    if not isinstance(obj, dict):
        raise err("each line must be a JSON object")
    for key in ("id", "emotion", "turns"):
        if key not in obj:
            raise err("missing required field", key)
    emotion = str(obj["emotion"]).strip().lower()
    if emotion not in EMOTION_TO_ID:
        raise err(f"unknown emotion {obj['emotion']!r} (not one of the 32 ED labels)", "emotion")
    if not isinstance(obj["turns"], list) or not obj["turns"]:
        raise err("must be a non-empty list", "turns")
    turns = []
    for i, t in enumerate(obj["turns"]):
        if not isinstance(t, dict) or t.get("role") not in ("speaker", "listener") or not isinstance(t.get("text"), str):
            raise err("each turn needs role 'speaker'|'listener' and a string text", f"turns[{i}]")
        turns.append(Turn(t["role"], t["text"].strip(), _annotation(t.get("annotation"), err, f"turns[{i}].annotation")))
    profile = obj.get("profile") or {}
    if not isinstance(profile, dict):
        raise err("must be an object", "profile")
    unknown = set(profile) - set(PROFILE_FIELDS)
    if unknown:
        raise err(f"unknown profile key(s) {sorted(unknown)}; allowed: {PROFILE_FIELDS}", "profile")
    return Dialogue(id=str(obj["id"]), emotion=emotion, situation=str(obj.get("situation", "")).strip(),
                    turns=tuple(turns), split=str(obj.get("split", "")), profile={k: str(v) for k, v in profile.items()},
                    source=f"{source}:{lineno}")


def read_jsonl(path: str | Path, split: str | None = None) -> list[Dialogue]:
    from empathkit.runs import iter_jsonl

    p = Path(path)
    out: list[Dialogue] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(p):
        d = parse_dialogue(obj, str(p), lineno)
        if d.id in seen:
            raise DataError(f"duplicated dialogue id {d.id!r} (first on line {seen[d.id]})", file=str(p),
                            line=lineno, field="id")
        seen[d.id] = lineno
        if split is None or not d.split or d.split == split:
            out.append(d)
    if not seen:
        raise DataError("file is empty", file=str(p), line=1)
    return out


ANNOTATION_FIELDS = ("tokens", "reason_tags", "intent", "emotion", "annotator")


def _annotation(obj: object, err, field: str) -> TurnAnnotation | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise err("must be an object", field)
    unknown = sorted(set(obj) - set(ANNOTATION_FIELDS))
    if unknown:
        raise err(f"unknown annotation key(s) {unknown}; allowed: {ANNOTATION_FIELDS}", field)
    for key in ("tokens", "reason_tags"):
        if not isinstance(obj.get(key, []), list) or not all(isinstance(x, str) for x in obj.get(key, [])):
            raise err("must be a list of strings", f"{field}.{key}")
    for key in ("intent", "emotion", "annotator"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise err("must be a string", f"{field}.{key}")
    try:
        return TurnAnnotation.from_json(obj)
    except ValueError as e:  # tags not aligned with tokens, unknown tag
        raise err(str(e), f"{field}.reason_tags") from None


def write_jsonl(dialogues: Iterable[Dialogue], path: str | Path) -> None:
    with Path(path).open("w", encoding="utf-8") as f:
        for d in dialogues:
            obj = {"id": d.id, "emotion": d.emotion, "situation": d.situation, "split": d.split,
                   "turns": [{"role": t.role, "text": t.text} | ({"annotation": t.annotation.to_json()}
                                                               if t.annotation else {}) for t in d.turns]}
            if d.profile:
                obj["profile"] = d.profile
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
