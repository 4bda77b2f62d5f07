"""Reader for EmpatheticDialogues in the official release layout.

Accepts a folder holding ``train.csv``/``valid.csv``/``test.csv`` (or ``empatheticdialogues/`` below it) or the
``empatheticdialogues.tar.gz`` archive. The files have no quoting: commas inside text are encoded as ``_comma_``;
valid/test may carry extra trailing columns (inline candidates), which are ignored. Roles come from the parity of
``utterance_idx`` (odd = speaker, even = listener) because ``speaker_idx`` is a worker id in the original release.

Nothing is changed silently (docs/data.md lists every case): a raw comma shifts the columns, so a row is checked
against the header (field count; ``speaker_idx`` an integer and ``selfeval`` digits / ``|`` / ``_`` as in the
release) and a shift stops with file:line:field. Empty utterances, NUL bytes, ``utterance_idx`` below 1, above
:data:`MAX_UTTERANCE_IDX` or repeated are errors; gaps in ``utterance_idx`` are a counted warning naming the
conversations (no row is dropped; roles still follow the parity). A corrupt archive is a one-line error.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Iterator

from empathkit.data.emotions import EMOTION_TO_ID
from empathkit.errors import DataError
from empathkit.types import Dialogue, Turn

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("conv_id", "utterance_idx", "context", "prompt", "utterance")
SPLITS = ("train", "valid", "test")
MAX_UTTERANCE_IDX = 1000  # ED dialogues have at most 8 turns; far larger indices are corrupt (1e20, overflow)
SELFEVAL = re.compile(r"[0-9|_]*")
SHIFT_HINT = "a raw comma in an earlier field shifts the columns (ED writes commas in text as _comma_)"


def decode_text(s: str) -> str:
    return s.replace("_comma_", ",").strip()


def _iter_lines(raw: bytes, source: str) -> Iterator[tuple[int, str]]:
    if not raw.strip():
        raise DataError("file is empty", file=source, line=1)
    for lineno, bline in enumerate(raw.splitlines(), start=1):
        try:
            yield lineno, bline.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"not valid UTF-8 (byte {e.start}: {bline[e.start:e.start + 4]!r})", file=source,
                            line=lineno) from None


def parse_rows(lines: Iterable[tuple[int, str]], source: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, row dict)`` from ED's unquoted comma-separated lines, checking the header."""
    it = iter(lines)
    try:
        _, header_line = next(it)
    except StopIteration:
        raise DataError("file is empty", file=source, line=1) from None
    header = [h.strip() for h in header_line.split(",")]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"missing column(s) {', '.join(missing)} in header {header_line.strip()!r}", file=source,
                        line=1, field=missing[0])
    n = len(header)
    release = "selfeval" in header and "tags" in header  # the release layout: inline candidates may follow
    seen_rows = 0
    for lineno, line in it:
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split(",")
        if "\x00" in line:
            col = next(i for i, x in enumerate(parts) if "\x00" in x)
            raise DataError("NUL byte in the text", file=source, line=lineno,
                            field=header[col] if col < n else f"column {col + 1}")
        if len(parts) < n - 2:  # selfeval/tags may be dropped at the end of the line
            raise DataError(f"expected {n} comma-separated fields, got {len(parts)}", file=source, line=lineno)
        if len(parts) > n and not release:
            raise DataError(f"expected {n} comma-separated fields, got {len(parts)}: {SHIFT_HINT}", file=source,
                            line=lineno)
        row = {h: (parts[i] if i < len(parts) else "") for i, h in enumerate(header)}
        _check_shift(row, source, lineno)
        seen_rows += 1
        yield lineno, row
    if seen_rows == 0:
        raise DataError("file has a header but no rows", file=source, line=2)


def _check_shift(row: dict[str, str], source: str, lineno: int) -> None:
    """Columns whose release format is fixed reveal a shift: ``speaker_idx`` is an integer, ``selfeval`` is empty or
    digits / ``|`` / ``_`` (e.g. ``5|5|5_2|2|5``)."""
    sp = row.get("speaker_idx")
    if sp is not None and not sp.strip().lstrip("-").isdigit():
        raise DataError(f"speaker_idx must be an integer, got {sp[:40]!r}: {SHIFT_HINT}", file=source, line=lineno,
                        field="speaker_idx")
    ev = row.get("selfeval")
    if ev is not None and not SELFEVAL.fullmatch(ev.strip()):
        raise DataError(f"selfeval must be empty or like 5|5|5_2|2|5, got {ev[:40]!r}: {SHIFT_HINT} (in the "
                        "utterance?)", file=source, line=lineno, field="selfeval")


def rows_to_dialogues(rows: Iterable[tuple[int, dict[str, str]]], source: str, split: str = "") -> list[Dialogue]:
    """Group rows into dialogues: order by ``utterance_idx``, roles by parity, validate labels and duplicates."""
    convs: "OrderedDict[str, dict]" = OrderedDict()
    for lineno, row in rows:
        cid = row["conv_id"].strip()
        if not cid:
            raise DataError("empty conv_id", file=source, line=lineno, field="conv_id")
        raw_idx = row["utterance_idx"].strip()
        if not raw_idx.lstrip("-").isdigit():
            raise DataError(f"utterance_idx must be an integer, got {raw_idx[:40]!r}", file=source,
                            line=lineno, field="utterance_idx")
        idx = int(raw_idx)
        if not 1 <= idx <= MAX_UTTERANCE_IDX:
            raise DataError(f"utterance_idx must be between 1 and {MAX_UTTERANCE_IDX}, got {raw_idx[:40]}",
                            file=source, line=lineno, field="utterance_idx")
        emotion = row["context"].strip().lower()
        if emotion not in EMOTION_TO_ID:
            raise DataError(f"unknown emotion {row['context']!r} (not one of the 32 ED labels)", file=source,
                            line=lineno, field="context")
        c = convs.setdefault(cid, {"emotion": emotion, "situation": decode_text(row["prompt"]), "turns": {},
                                   "line": lineno})
        if c["emotion"] != emotion:
            raise DataError(f"conversation {cid} changes emotion from {c['emotion']!r} to {emotion!r}", file=source,
                            line=lineno, field="context")
        if idx in c["turns"]:
            raise DataError(f"duplicated turn: conversation {cid} has utterance_idx {idx} twice (first on line "
                            f"{c['turns'][idx][0]})", file=source, line=lineno, field="utterance_idx")
        text = decode_text(row["utterance"])
        if not text:
            raise DataError("empty utterance", file=source, line=lineno, field="utterance")
        c["turns"][idx] = (lineno, text)
    dialogues = []
    gaps: list[str] = []
    for cid, c in convs.items():
        idxs = sorted(c["turns"])
        if idxs != list(range(1, len(idxs) + 1)):
            gaps.append(cid)
        turns = tuple(Turn("speaker" if i % 2 == 1 else "listener", c["turns"][i][1]) for i in idxs)
        dialogues.append(Dialogue(id=cid, emotion=c["emotion"], situation=c["situation"], turns=turns, split=split,
                                  source=f"{source}:{c['line']}"))
    if gaps:
        more = f" and {len(gaps) - 5} more" if len(gaps) > 5 else ""
        log.warning("%s: %d conversation(s) have gaps in utterance_idx (%s%s); no row dropped, roles follow the "
                    "index parity", source, len(gaps), ", ".join(gaps[:5]), more)
    return dialogues


def _find_in_folder(path: Path, split: str) -> Path | None:
    for cand in (path / f"{split}.csv", path / "empatheticdialogues" / f"{split}.csv"):
        if cand.is_file():
            return cand
    return None


def read_split(path: str | Path, split: str) -> list[Dialogue]:
    """Read one split from a release folder or the ``.tar.gz`` archive."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    p = Path(path)
    if p.is_file() and p.name.endswith((".tar.gz", ".tgz", ".tar")):
        raw, name = _read_member(p, split)
        source = f"{p}!{name}"
    elif p.is_file() and p.suffix == ".csv":
        raw, source = p.read_bytes(), str(p)
    elif p.is_dir():
        f = _find_in_folder(p, split)
        if f is None:
            raise DataError(f"no {split}.csv in {p} (expected the official release layout)", file=str(p))
        raw, source = f.read_bytes(), str(f)
    else:
        raise DataError("not found: expected a folder with train/valid/test.csv or empatheticdialogues.tar.gz",
                        file=str(p))
    return rows_to_dialogues(parse_rows(_iter_lines(raw, source), source), source, split)


def _read_member(p: Path, split: str) -> tuple[bytes, str]:
    try:
        with tarfile.open(p) as tar:
            member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(f"/{split}.csv")
                           or m.name == f"{split}.csv"), None)
            if member is None:
                raise DataError(f"archive has no {split}.csv", file=str(p))
            return tar.extractfile(member).read(), member.name  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"not a readable archive ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'})",
                        file=str(p)) from None


def read_ed(path: str | Path, splits: Iterable[str] = SPLITS) -> dict[str, list[Dialogue]]:
    return {s: read_split(path, s) for s in splits}


def write_split(dialogues: Iterable[Dialogue], path: str | Path) -> None:
    """Write dialogues back in the release layout (used for fixtures and for exporting user data)."""
    buf = io.StringIO()
    buf.write("conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n")
    for d in dialogues:
        for i, t in enumerate(d.turns, start=1):
            enc = lambda s: s.replace(",", "_comma_")  # noqa: E731
            buf.write(f"{d.id},{i},{d.emotion},{enc(d.situation)},{0 if t.role == 'speaker' else 1},{enc(t.text)},,\n")
    Path(path).write_text(buf.getvalue(), encoding="utf-8")
