"""The annotated multi-task ED dataset: JSONL in the cache, one dialogue per line, resumable.

Record = the dialogue fields of ``empathkit.data.jsonl`` (``id``, ``emotion``, ``situation``, ``split``, ``turns``,
``profile``) with an ``annotation`` on every turn (``TurnAnnotation.to_json``: tokens, reason_tags, intent,
annotator) and a top-level ``annotator`` (``<name>@<version>`` of the whole pipeline, e.g.
``lexicon@1+intent-classifier@1``). Speaker turns carry tokens + ``<em>``/``<noem>`` tags; listener turns carry
tokens, all ``<noem>`` (ReflectDiffu Sec. 3.2: the chatbot's r is always <noem>) and an intent.

Writing appends one line per dialogue and flushes it, so a killed run leaves at most one incomplete last line;
:class:`AnnotatedWriter` truncates that line and resumes after the ids already written (no duplicates).
A sidecar ``<file>.meta.json`` keeps the annotator, the source, the counts (annotated / skipped turns by reason,
rejected LLM replies) and the timing of every run. Nothing here is ever written into the repository.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from empathkit.errors import DataError
from empathkit.types import Dialogue

FORMAT_VERSION = 1


def annotate_dir() -> Path:
    from empathkit.paths import cache_dir

    p = cache_dir() / "annotate"
    p.mkdir(parents=True, exist_ok=True)
    return p


def default_annotated_path(annotator: str = "lexicon") -> Path:
    """Where ``empathkit annotate --annotator <annotator>`` writes all of ED: ``cache_dir()/annotate/ed-<name>.jsonl``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in annotator)
    return annotate_dir() / f"ed-{safe}.jsonl"


def meta_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".meta.json")


def dialogue_record(d: Dialogue, annotator: str) -> dict[str, Any]:
    turns = []
    for t in d.turns:
        row: dict[str, Any] = {"role": t.role, "text": t.text}
        if t.annotation is not None:
            row["annotation"] = t.annotation.to_json()
            # to_json drops empty tuples; an empty turn keeps explicit empty lists
            row["annotation"].setdefault("tokens", [])
            row["annotation"].setdefault("reason_tags", [])
        turns.append(row)
    obj: dict[str, Any] = {"id": d.id, "emotion": d.emotion, "situation": d.situation, "split": d.split,
                           "turns": turns, "annotator": annotator}
    if d.profile:
        obj["profile"] = dict(d.profile)
    return obj


def read_annotated(path: str | Path, split: str | None = None) -> list[Dialogue]:
    """Dialogues of an annotated file (optionally one split); every turn must carry its annotation.

    Errors name file, line and field (:class:`~empathkit.errors.DataError`): a turn without annotation, tags not
    aligned with tokens, a listener turn with an ``<em>`` tag or without intent, a duplicated id.
    """
    from empathkit.data.jsonl import parse_dialogue
    from empathkit.runs import iter_jsonl

    p = Path(path)
    out: list[Dialogue] = []
    seen: dict[str, int] = {}
    for lineno, obj in iter_jsonl(p):
        d = parse_dialogue({k: v for k, v in obj.items() if k != "annotator"}, str(p), lineno)
        for i, t in enumerate(d.turns):
            field = f"turns[{i}].annotation"
            a = t.annotation
            if a is None:
                raise DataError("turn has no annotation (not an annotated file?)", file=str(p), line=lineno, field=field)
            if len(a.reason_tags) != len(a.tokens):
                raise DataError(f"{len(a.reason_tags)} reason tags for {len(a.tokens)} tokens", file=str(p),
                                line=lineno, field=f"{field}.reason_tags")
            if t.role == "listener":
                if "<em>" in a.reason_tags:
                    raise DataError("listener turns are always <noem>", file=str(p), line=lineno,
                                    field=f"{field}.reason_tags")
                if not a.intent:
                    raise DataError("listener turn has no intent", file=str(p), line=lineno, field=f"{field}.intent")
        if d.id in seen:
            raise DataError(f"duplicated dialogue id {d.id!r} (first on line {seen[d.id]})", file=str(p),
                            line=lineno, field="id")
        seen[d.id] = lineno
        if split is None or d.split == split:
            out.append(d)
    if not seen:
        raise DataError("file is empty", file=str(p), line=1)
    return out


def read_meta(path: str | Path) -> dict[str, Any]:
    m = meta_path(path)
    return json.loads(m.read_text(encoding="utf-8")) if m.is_file() else {}


def write_meta(path: str | Path, meta: dict[str, Any]) -> None:
    m = meta_path(path)
    tmp = m.with_name(f".{m.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(m)


def _complete_ids(p: Path) -> tuple[list[str], int]:
    """Ids of the complete lines of ``p`` and the byte length of that complete prefix (a killed run may leave a
    partial last line; it is cut off). A complete line that is not a valid record is an error, not a resume point."""
    ids: list[str] = []
    good = 0
    with p.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break  # the partial line of a killed run
            try:
                obj = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise DataError("corrupt line in an annotated file (delete it or pass --overwrite)", file=str(p),
                                line=lineno) from None
            if not isinstance(obj, dict) or "id" not in obj:
                raise DataError("record without an id", file=str(p), line=lineno, field="id")
            ids.append(str(obj["id"]))
            good += len(raw)
    return ids, good


class AnnotatedWriter:
    """Appends annotated dialogues to ``path``; on open, resumes after the complete lines already there.

    ``annotator`` must match the file's recorded annotator when resuming (mixing annotators in one file is refused).
    """

    def __init__(self, path: str | Path, annotator: str, *, overwrite: bool = False, source: str = ""):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.annotator = annotator
        meta = {} if overwrite else read_meta(self.path)
        if overwrite or not self.path.exists():
            self.path.write_bytes(b"")
            meta = {}
        if meta.get("annotator") and meta["annotator"] != annotator:
            raise DataError(f"file was written by {meta['annotator']!r}, not {annotator!r} (use another --out or "
                            "--overwrite)", file=str(self.path), field="annotator")
        ids, good = _complete_ids(self.path)
        self.truncated_bytes = self.path.stat().st_size - good
        if self.truncated_bytes:
            with self.path.open("r+b") as f:
                f.truncate(good)
        self.done: set[str] = set(ids)
        self.resumed = len(ids)
        self.meta: dict[str, Any] = meta or {"format": FORMAT_VERSION, "annotator": annotator, "source": source,
                                             "runs": []}
        self.meta["annotator"] = annotator
        if source:  # each run's source is also in its "runs" entry
            self.meta["source"] = source
        write_meta(self.path, self.meta)  # at once: a killed run still names its annotator for the next resume
        self._f = self.path.open("a", encoding="utf-8")

    def write(self, d: Dialogue) -> None:
        if d.id in self.done:
            raise DataError(f"dialogue {d.id!r} is already in the file", file=str(self.path), field="id")
        self._f.write(json.dumps(dialogue_record(d, self.annotator), ensure_ascii=False) + "\n")
        self._f.flush()
        self.done.add(d.id)

    def close(self, run_info: dict[str, Any] | None = None) -> None:
        self._f.close()
        if run_info is not None:
            self.meta.setdefault("runs", []).append(run_info)
            self.meta["dialogues"] = len(self.done)
            self.meta["counts"] = total_counts(self.meta["runs"])
            write_meta(self.path, self.meta)

    def __enter__(self) -> "AnnotatedWriter":
        return self

    def __exit__(self, *exc) -> None:
        if not self._f.closed:
            self._f.close()


def total_counts(runs: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Sum the per-run counts (annotated turns, skipped turns by reason, rejected replies by reason)."""
    tot: dict[str, Any] = {}
    for r in runs:
        for k, v in (r.get("counts") or {}).items():
            if isinstance(v, dict):
                c = Counter(tot.get(k, {}))
                c.update(v)
                tot[k] = dict(c)
            else:
                tot[k] = tot.get(k, 0) + v
    return tot
