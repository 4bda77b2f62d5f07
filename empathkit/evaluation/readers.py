"""Read any system's outputs into :class:`Record` objects.

- **JSONL** (our ``predictions.jsonl``): fields ``prediction``, ``reference``, ``context`` (list of turns or a
  string), ``emotion``, ``id``; other names via :class:`Columns`. An ``annotations`` object (per-turn tags, intents,
  retrieved exemplars, …) is carried through untouched; a nested ``extra`` object (``Prediction.extra``) is merged
  into :attr:`Record.extra`.
- **CSV / TSV** with a header row; column names via :class:`Columns` (defaults accept common aliases such as
  ``hypothesis`` / ``response``); a context cell holds the turns joined by ``context_sep`` (default ``" ||| "``).
- **Parallel text files**: one hypothesis per line (``.txt``) + ``references=`` file (one per line) + optional
  ``contexts=`` file (one line per example, turns separated by ``context_sep``, default TAB) + optional
  ``emotions=`` file.

Every reader error is a :class:`~empathkit.errors.DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from empathkit.errors import ConfigError, DataError


@dataclass
class Record:
    id: str
    hypothesis: str
    reference: str
    context: list[str] = field(default_factory=list)
    emotion: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other fields; metrics see them as ``Batch.extra``
    annotations: dict[str, Any] = field(default_factory=dict)  # passed through to per-example output, not read


@dataclass
class Columns:
    """Field / column names. ``None`` = try the aliases in order."""

    hypothesis: str | None = None
    reference: str | None = None
    context: str | None = None
    emotion: str | None = None
    id: str | None = None


_ALIASES = {
    "hypothesis": ("prediction", "hypothesis", "hyp", "response", "generation", "generated", "output", "pred"),
    "reference": ("reference", "ref", "target", "gold", "ground_truth", "label_text"),
    "context": ("context", "history", "dialogue_context", "prompt", "source"),
    "emotion": ("emotion", "emotion_label", "label", "emo"),
    "id": ("id", "example_id", "idx"),
}


def _pick(available: Iterable[str], role: str, explicit: str | None, file: str, line: int, required: bool) -> str | None:
    avail = list(available)
    if explicit:
        if explicit not in avail:
            raise DataError(f"missing {role} field/column {explicit!r} (have: {', '.join(avail)})", file=file,
                            line=line, field=explicit)
        return explicit
    for a in _ALIASES[role]:
        if a in avail:
            return a
    if required:
        raise DataError(f"no {role} field/column (tried {', '.join(_ALIASES[role])}; have: {', '.join(avail)}); "
                        f"name it with --{role[:3]}-col", file=file, line=line, field=role)
    return None


def _as_context(value: Any, sep: str, file: str, line: int, field_name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        if not all(isinstance(t, str) for t in value):
            raise DataError("context list must hold strings", file=file, line=line, field=field_name)
        return list(value)
    if isinstance(value, str):
        return [t.strip() for t in value.split(sep) if t.strip()]
    raise DataError(f"context must be a list of strings or a string, got {type(value).__name__}", file=file,
                    line=line, field=field_name)


def _as_text(value: Any, file: str, line: int, field_name: str) -> str:
    if value is None:
        raise DataError("value is missing (null)", file=file, line=line, field=field_name)
    if not isinstance(value, str):
        raise DataError(f"expected a string, got {type(value).__name__}", file=file, line=line, field=field_name)
    return value


def _row_to_record(row: Mapping[str, Any], cols: Columns, sep: str, file: str, lineno: int, k: int,
                   annotations: bool = False) -> Record:
    """One JSON object / CSV row → a record. ``annotations``: take the ``annotations`` key out (JSON rows only)."""
    keys = list(row.keys())
    h = _pick(keys, "hypothesis", cols.hypothesis, file, lineno, True)
    r = _pick(keys, "reference", cols.reference, file, lineno, True)
    c = _pick(keys, "context", cols.context, file, lineno, False)
    e = _pick(keys, "emotion", cols.emotion, file, lineno, False)
    i = _pick(keys, "id", cols.id, file, lineno, False)
    taken = {h, r, c, e, i} | ({"annotations"} if annotations else set())
    extra = {k2: v for k2, v in row.items() if k2 not in taken}
    if isinstance(extra.get("extra"), dict):  # our Prediction.extra (e.g. predicted emotion, log-likelihoods)
        extra = {**extra, **extra.pop("extra")}
    ann = row.get("annotations") if annotations else None
    if ann is not None and not isinstance(ann, dict):
        raise DataError(f"must be an object, got {type(ann).__name__}", file=file, line=lineno, field="annotations")
    emo = row.get(e) if e else None
    return Record(id=str(row[i]) if i and row.get(i) not in (None, "") else str(k),
                  hypothesis=_as_text(row[h], file, lineno, h), reference=_as_text(row[r], file, lineno, r),
                  context=_as_context(row.get(c), sep, file, lineno, c) if c else [],
                  emotion=str(emo).strip() if emo not in (None, "") else None, extra=extra,
                  annotations=dict(ann or {}))


def _read_jsonl(p: Path, cols: Columns, sep: str) -> list[Record]:
    from empathkit.runs import iter_jsonl

    out = [_row_to_record(row, cols, sep, str(p), lineno, k, annotations=True)
           for k, (lineno, row) in enumerate(iter_jsonl(p))]
    if not out:
        raise DataError("no predictions in file", file=str(p))
    return out


def _read_csv(p: Path, cols: Columns, sep: str, delimiter: str) -> list[Record]:
    out: list[Record] = []
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        if not reader.fieldnames:
            raise DataError("file is empty (no header row)", file=str(p), line=1)
        for row in reader:
            lineno = reader.line_num
            if None in row:
                raise DataError(f"more fields than the {len(reader.fieldnames)} header columns", file=str(p), line=lineno)
            missing = [k for k, v in row.items() if v is None]
            if missing:
                raise DataError(f"fewer fields than the header ({len(reader.fieldnames)} columns)", file=str(p),
                                line=lineno, field=missing[0])
            out.append(_row_to_record(row, cols, sep, str(p), lineno, len(out)))
    if not out:
        raise DataError("header but no rows", file=str(p), line=2)
    return out


def _read_lines(p: Path) -> list[str]:
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = p.read_bytes()[:e.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 (byte {e.start})", file=str(p), line=line) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _read_parallel(p: Path, references: str | Path, contexts: str | Path | None, emotions: str | Path | None,
                   sep: str) -> list[Record]:
    hyps, refs = _read_lines(p), _read_lines(Path(references))
    if not hyps:
        raise DataError("no hypotheses (empty file)", file=str(p))
    if len(refs) != len(hyps):
        short, long_ = (references, p) if len(refs) < len(hyps) else (p, references)
        raise DataError(f"{len(hyps)} hypotheses but {len(refs)} references: {short} ends at line "
                        f"{min(len(refs), len(hyps))}", file=str(long_), line=min(len(refs), len(hyps)) + 1)
    ctxs = _read_lines(Path(contexts)) if contexts else None
    emos = _read_lines(Path(emotions)) if emotions else None
    for name, xs in (("contexts", ctxs), ("emotions", emos)):
        if xs is not None and len(xs) != len(hyps):
            src = contexts if name == "contexts" else emotions
            raise DataError(f"{len(xs)} lines but {len(hyps)} hypotheses", file=str(src), line=min(len(xs), len(hyps)) + 1)
    return [Record(id=str(i), hypothesis=h, reference=r,
                   context=[t.strip() for t in ctxs[i].split(sep) if t.strip()] if ctxs else [],
                   emotion=(emos[i].strip() or None) if emos else None)
            for i, (h, r) in enumerate(zip(hyps, refs))]


FORMATS = ("auto", "jsonl", "csv", "tsv", "text")


def read_predictions(path: str | Path, fmt: str = "auto", columns: Columns | None = None,
                     references: str | Path | None = None, contexts: str | Path | None = None,
                     emotions: str | Path | None = None, context_sep: str | None = None) -> list[Record]:
    """Read one system's outputs. ``fmt``: auto (by suffix) | jsonl | csv | tsv | text."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown input format {fmt!r} ({' | '.join(FORMATS)})")
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    cols = columns or Columns()
    if fmt == "auto":
        fmt = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}.get(p.suffix.lower(), "text")
    if fmt == "jsonl":
        return _read_jsonl(p, cols, context_sep or " ||| ")
    if fmt in ("csv", "tsv"):
        return _read_csv(p, cols, context_sep or " ||| ", "," if fmt == "csv" else "\t")
    if references is None:
        raise ConfigError(f"{p}: plain-text hypotheses need a references file (--refs)")
    return _read_parallel(p, references, contexts, emotions, context_sep or "\t")


def records_from_predictions(preds: Sequence[Any]) -> list[Record]:
    """:class:`empathkit.types.Prediction` objects (or their dicts) → records (``annotations`` carried along)."""
    out = []
    for k, p in enumerate(preds):
        d = p.to_json() if hasattr(p, "to_json") else dict(p)
        rec = _row_to_record(d, Columns(), " ||| ", "<predictions>", k + 1, k, annotations=True)
        if not rec.annotations and not isinstance(p, Mapping):  # a to_json() that leaves them out
            rec.annotations = dict(getattr(p, "annotations", None) or {})
        out.append(rec)
    return out
