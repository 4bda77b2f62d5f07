"""Read the output files that published empathetic-dialogue systems release, as they are.

Each released file can hold several decodes of the same examples (greedy / beam / top-k, or several models); each
decode becomes its own system. Model-side numbers a file prints in its header (loss, PPL, emotion accuracy, its
own BLEU) are returned as ``reported`` ("reported by the file"), never mixed with our scores.

=================  =====================================================================================
format             layout (released by)
=================  =====================================================================================
``moel``           blocks of ``Key: value`` lines separated by blank lines; keys ``Emotion``, ``Context``,
                   ``ref`` and one key per decode/model (``trs``, ``MOE``, …) in any order (MoEL
                   ``generation_result.txt``)
``kemp``           ``Emotion:`` / ``Context:`` / ``Concept:`` / ``Pred:`` / ``Ref:`` lines, an example ends at
                   ``Ref:`` (KEMP ``result/KEMP/KEMP.txt``; EmpDG ``Predictions/*.txt`` has the same layout
                   with ``Emotion_context:`` or ``Greedy:``)
``cem``            as ``kemp`` plus an ``EVAL\\tLoss\\tPPL\\tAccuracy`` header whose value line is
                   ``loss ppl bce acc``; decodes ``Greedy:`` / ``Beam:``; dashed separators (CEM ``results.txt``)
``mime``           as ``cem``, header ``EVAL Loss PPL Accuracy Bleu_g Bleu_b Bleu_t`` / ``test …``, decodes
                   ``Topk:`` / ``Beam:`` / ``Greedy:``, an ``emotion:…<TAB>vader-score:…`` line (MIME ``output.txt``)
``empo``           pandas CSV with ``sep="~"``: ``gen_targets``, ``prevs``, ``emotions``, ``gens`` and per-example
                   EPITOME columns (EmPO ``predictions/preds_*_epi.txt``); ``human=True`` adds the references
                   as a ``human`` system
``empathy-eval``   JSON list of ``{"query": [turns], "response": …, <decode>: …}`` (Lee et al. 2024
                   ``data/outputs/<system>_responses.json``); no references
``care``           pandas ``to_csv(header=False, index=False)`` of one column: one response per row, quoted
                   when it holds a comma (CARE ``save/generated_results.txt``); references from ``references=``
                   (one per line, e.g. the ``ref:`` lines of MoEL's file: same 5,255 test examples); not
                   auto-detected
=================  =====================================================================================

``strip="charset"`` reproduces the KEMP / EmpDG / CEM scripts' ``line.strip('Pred:')``: Python's ``str.strip``
removes *any* of the characters ``P r e d :`` from both ends, so "Pred:really" becomes "ally". Off by default
(``strip="prefix"`` removes exactly the key); the as-published presets turn it on (:data:`PRESET_READER`).
Every error is a one-line :class:`~empathkit.errors.DataError` naming file, line and field.
"""

from __future__ import annotations

import ast
import csv
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from empathkit.errors import ConfigError, DataError
from empathkit.evaluation.readers import Record

FORMATS = ("moel", "kemp", "cem", "mime", "empdg", "empo", "empathy-eval", "care")
STRIPS = ("prefix", "charset")
_LINE_DECODES = {"pred": "pred", "greedy": "greedy", "beam": "beam", "topk": "topk", "top_k": "topk"}
_KEY = re.compile(r"^([A-Za-z][A-Za-z0-9_ +\-]{0,40}?):")


@dataclass
class ReleasedSystem:
    """One decode of a released file: its records and what the file itself reports."""

    decode: str
    records: list[Record]
    reported: dict[str, float] = field(default_factory=dict)
    source: str = ""


def detect_format(path: str | Path) -> str | None:
    """Guess the released layout from the file's first lines (``None`` = not a released layout)."""
    p = Path(path)
    try:
        head = p.open(encoding="utf-8", errors="replace").read(20000)
    except OSError:
        return None
    lines = head.splitlines()
    first = lines[0] if lines else ""
    if head.lstrip().startswith("[") and '"query"' in head[:5000]:
        return "empathy-eval"
    if "~" in first and "gens" in first.split("~"):
        return "empo"
    if any(ln.startswith("EVAL\t") for ln in lines[:5]):
        return "mime" if ("Bleu_g" in head or "\nTopk:" in head) else "cem"
    if "\nConcept:" in head or head.startswith("Emotion:") and "\nPred:" in head:
        return "kemp"
    if "\nEmotion_context:" in head or ("\nPred:" in head or "\nGreedy:" in head) and "\nRef:" in head:
        return "empdg"
    if re.search(r"^ref: ", head, re.M) and re.search(r"^Context: \[", head, re.M):
        return "moel"
    return None


def read_released(path: str | Path, fmt: str = "auto", strip: str = "prefix", human: bool = False,
                  references: str | Path | None = None) -> list[ReleasedSystem]:
    """Every decode held by one released file → :class:`ReleasedSystem` objects (in file order)."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", file=str(p))
    if strip not in STRIPS:
        raise ConfigError(f"strip must be one of {' | '.join(STRIPS)}, got {strip!r}")
    if fmt == "auto":
        fmt = detect_format(p) or ""
        if not fmt:
            raise DataError(f"not a released layout we know ({', '.join(FORMATS)}); give --format", file=str(p))
    if fmt not in FORMATS:
        raise ConfigError(f"unknown released format {fmt!r} ({' | '.join(FORMATS)})")
    if fmt == "empo":
        out = _read_empo(p, human)
    elif fmt == "empathy-eval":
        out = _read_empathy_eval(p)
    elif fmt == "care":
        out = _read_care(p, references)
    elif fmt == "moel":
        out = _read_moel(p, strip)
    else:
        out = _read_lines_layout(p, strip)
    for s in out:
        s.source = str(p)
    return out


# ------------------------------------------------------------------------------------------------ helpers
def _value(raw: str, key: str, strip: str, sep: str = ":") -> str:
    """The text after ``key:`` on a raw line (newline included, as the original scripts read it)."""
    if strip == "charset":  # the original scripts: line.strip('Pred:').strip('\n') (a character set, both ends)
        return raw.strip(key + sep).strip("\n")
    return raw[len(key) + len(sep):].strip()


def _context(text: str, file: str, line: int) -> list[str]:
    try:
        v = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        raise DataError("Context must be a Python list of strings", file=file, line=line, field="Context") from None
    if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
        raise DataError("Context must be a Python list of strings", file=file, line=line, field="Context")
    return v


def _read_raw(p: Path) -> list[str]:
    try:
        return p.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 (byte {e.start})", file=str(p)) from None


def _num(x: str) -> float | None:
    try:
        return float(x)
    except ValueError:
        return None


def _header(names: list[str], values: list[str]) -> dict[str, float]:
    """``EVAL Loss PPL Accuracy …`` + its value line → reported numbers (CEM writes ``loss ppl bce acc``)."""
    if values and _num(values[0]) is None:  # MIME: "test 3.6253 37.5363 0.3488 2.76 …"
        pairs = zip(names[1:], values[1:])
    else:  # CEM: the value line is loss, ppl, bce, acc under the header "EVAL Loss PPL Accuracy"
        pairs = zip(["Loss", "PPL", "BCE", "Accuracy"], values)
    return {k.lower(): v for k, v in ((k, _num(v)) for k, v in pairs) if v is not None}


def _systems(decodes: dict[str, list[Record]], reported: dict[str, float]) -> list[ReleasedSystem]:
    out = []
    for name, recs in decodes.items():
        rep = {k: v for k, v in reported.items() if not k.startswith("bleu_") or k == f"bleu_{name[:1]}"}
        out.append(ReleasedSystem(name, recs, rep))
    return out


# ------------------------------------------------------------------------------------------------ layouts
def _read_lines_layout(p: Path, strip: str) -> list[ReleasedSystem]:
    """KEMP / EmpDG / CEM / MIME: ``Key:value`` lines; an example ends at its ``Ref:`` line."""
    file = str(p)
    raw = _read_raw(p)
    reported: dict[str, float] = {}
    decodes: dict[str, list[Record]] = {}
    cur: dict[str, Any] = {}
    start = 0
    k = 0
    for i, line in enumerate(raw, start=1):
        body = line.rstrip("\r\n")
        if not body.strip() or set(body.strip()) <= {"-", "="} or body.startswith("###"):
            continue
        if body.startswith("EVAL\t"):
            if i >= len(raw):
                raise DataError("header line without its value line", file=file, line=i)
            reported.update(_header(body.split("\t"), raw[i].split()))
            continue
        if raw[i - 2].startswith("EVAL\t") if i >= 2 else False:
            continue  # the header's value line
        m = _KEY.match(body)
        if not m:
            raise DataError("expected a 'Key:value' line (Emotion/Context/Pred/Greedy/Beam/Topk/Ref)", file=file, line=i)
        key = m.group(1)
        if not cur:
            start = i
        low = key.lower()
        if low == "emotion":
            first, *rest = body.split("\t")  # MIME: emotion:x<TAB>vader-score: …<TAB>predicted_emotion: …
            cur["emotion"] = _value(first, key, "prefix")  # the scripts never read it with strip()
            for part in rest:
                if ":" in part:
                    a, b = part.split(":", 1)
                    cur.setdefault("extra", {})[a.strip().replace("-", "_")] = b.strip()
        elif low == "context":
            cur["context"] = _context(body[len(key) + 1:], file, i)
        elif low in _LINE_DECODES:
            cur.setdefault("decodes", {})[_LINE_DECODES[low]] = _value(line, key, strip)
        elif low == "ref":
            if not cur.get("decodes"):
                raise DataError("Ref: line of an example without any Pred/Greedy/Beam/Topk line", file=file, line=i)
            ref = _value(line, key, strip)
            for name, hyp in cur["decodes"].items():
                decodes.setdefault(name, []).append(Record(
                    id=str(k), hypothesis=hyp, reference=ref, context=cur.get("context", []),
                    emotion=cur.get("emotion"), extra={"line": start, **cur.get("extra", {})}))
            k += 1
            cur = {}
        else:  # Concept:, Emotion_context:, Pred Emotions:, COMET relations: kept as extra text
            cur.setdefault("extra", {})[low.replace(" ", "_")] = body[len(key) + 1:].strip()
    if cur.get("decodes"):
        raise DataError("last example has no Ref: line", file=file, line=start)
    if not decodes:
        raise DataError("no examples (no Ref: lines)", file=file)
    lengths = {n: len(r) for n, r in decodes.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"decodes cover different numbers of examples: {lengths}", file=file)
    return _systems(decodes, reported)


def _read_moel(p: Path, strip: str) -> list[ReleasedSystem]:
    """MoEL ``generation_result.txt``: blank-line separated blocks of ``Key: value`` lines, keys in any order."""
    file = str(p)
    raw = _read_raw(p) + ["\n"]
    decodes: dict[str, list[Record]] = {}
    block: list[tuple[int, str, str]] = []
    k = 0
    for i, line in enumerate(raw, start=1):
        if line.strip():
            m = _KEY.match(line)
            if not m:
                raise DataError("expected a 'Key: value' line", file=file, line=i)
            block.append((i, m.group(1), line))
            continue
        if not block:
            continue
        keys = {key: (n, ln) for n, key, ln in block}
        first = block[0][0]
        for need in ("Context", "ref"):
            if need not in keys:
                raise DataError(f"example without a {need!r} line", file=file, line=first, field=need)
        ctx = _context(keys["Context"][1][len("Context:"):], file, keys["Context"][0])
        ref = _value(keys["ref"][1], "ref", strip)
        emo = _value(keys["Emotion"][1], "Emotion", "prefix") if "Emotion" in keys else None
        for key, (n, ln) in keys.items():
            if key in ("Context", "ref", "Emotion"):
                continue
            decodes.setdefault(key, []).append(Record(id=str(k), hypothesis=_value(ln, key, strip), reference=ref,
                                                      context=ctx, emotion=emo, extra={"line": first}))
        k += 1
        block = []
    if not decodes:
        raise DataError("no examples", file=file)
    lengths = {n: len(r) for n, r in decodes.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"decodes cover different numbers of examples: {lengths}", file=file)
    return _systems(decodes, {})


_EMPO_EXTRA = ("pred_IP_scores", "pred_EX_scores", "pred_ER_scores", "gt_IP_scores", "gt_EX_scores", "gt_ER_scores",
               "diff_IP_scores", "diff_EX_scores", "diff_ER_scores")


def _read_empo(p: Path, human: bool) -> list[ReleasedSystem]:
    """EmPO ``preds_*``: pandas ``to_csv(sep="~")`` (quoted multi-line prompt cells); previous turn = ``prevs``."""
    file = str(p)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    gens, hum = [], []
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="~")
        cols = reader.fieldnames or []
        for need in ("gens", "gen_targets", "prevs"):
            if need not in cols:
                raise DataError(f"no {need!r} column (have: {', '.join(cols)})", file=file, line=1, field=need)
        for k, row in enumerate(reader):
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):
                raise DataError(f"row does not have the {len(cols)} header columns", file=file, line=line)
            extra = {c: _num(row[c]) for c in _EMPO_EXTRA if c in row and row[c] != ""}
            ctx = [row["prevs"]] if row["prevs"] else []
            rid = row.get("") or str(k)
            emo = row.get("emotions") or None
            gens.append(Record(id=rid, hypothesis=row["gens"], reference=row["gen_targets"], context=ctx,
                               emotion=emo, extra=dict(extra)))
            if human:
                hum.append(Record(id=rid, hypothesis=row["gen_targets"], reference=row["gen_targets"], context=ctx,
                                  emotion=emo))
    if not gens:
        raise DataError("header but no rows", file=file, line=2)
    out = [ReleasedSystem("gens", gens)]
    if human:
        out.append(ReleasedSystem("human", hum))
    return out


def _read_care(p: Path, references: str | Path | None) -> list[ReleasedSystem]:
    """CARE ``generated_results.txt``: a one-column CSV without header (csv unquotes the comma-holding rows)."""
    from empathkit.evaluation.readers import _read_lines

    file = str(p)
    with p.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    for i, row in enumerate(rows, start=1):
        if len(row) != 1:
            raise DataError(f"expected one column, got {len(row)}", file=file, line=i)
    refs = _read_lines(Path(references)) if references else [""] * len(rows)
    if len(refs) != len(rows):
        raise DataError(f"{len(rows)} responses but {len(refs)} references", file=str(references),
                        line=min(len(refs), len(rows)) + 1)
    if not rows:
        raise DataError("no responses (empty file)", file=file)
    return [ReleasedSystem("pred", [Record(id=str(k), hypothesis=r[0], reference=refs[k]) for k, r in enumerate(rows)])]


def _read_empathy_eval(p: Path) -> list[ReleasedSystem]:
    """Lee et al. ``<system>_responses.json``: each key other than ``query`` is a decode; ``response`` is the one
    their scripts score. No references (reference = "")."""
    file = str(p)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not valid JSON: {e.msg}", file=file, line=e.lineno) from None
    if not isinstance(data, list) or not data:
        raise DataError("expected a non-empty JSON list of objects", file=file)
    decodes: dict[str, list[Record]] = {}
    for k, obj in enumerate(data):
        if not isinstance(obj, dict) or not isinstance(obj.get("query"), list):
            raise DataError("each item must be an object with a 'query' list", file=file, field=f"[{k}].query")
        for key, val in obj.items():
            if key == "query":
                continue
            if not isinstance(val, str):
                raise DataError(f"expected a string, got {type(val).__name__}", file=file, field=f"[{k}].{key}")
            decodes.setdefault(key, []).append(Record(id=str(k), hypothesis=val, reference="",
                                                      context=[str(t) for t in obj["query"]]))
    lengths = {n: len(r) for n, r in decodes.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"items hold different decodes: {lengths}", file=file)
    order = sorted(decodes, key=lambda n: (n != "response", n))
    return [ReleasedSystem(n, decodes[n]) for n in order]


def expand_input(name: str, path: str | Path, fmt: str = "auto", strip: str = "prefix", human: bool = False,
                 references: str | Path | None = None) -> list[tuple[str, list[Record], dict[str, float]]] | None:
    """One ``NAME=PATH`` input → ``[(system name, records, reported)]`` when it is a released layout (named by
    ``fmt`` or detected), else ``None`` (our JSONL / CSV / text readers take it). Several decodes in one file
    become ``NAME:decode`` systems."""
    p = Path(path)
    if fmt not in FORMATS:
        if fmt != "auto" or references is not None or p.suffix.lower() in (".jsonl", ".csv", ".tsv"):
            return None
        fmt = detect_format(p) or ""
        if not fmt:
            return None
    systems = read_released(p, fmt, strip, human, references)
    if len(systems) == 1:
        return [(name, systems[0].records, systems[0].reported)]
    return [(f"{name}:{s.decode}", s.records, s.reported) for s in systems]
