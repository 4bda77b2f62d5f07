"""Training data readers for the auxiliary classifiers (all from the shared data folder, never copied).

Each ``load_<kind>`` returns ``{split: (inputs, labels)}`` for ``train`` / ``valid`` / ``test`` plus an ``info`` dict
describing the source and split sizes; ``quick`` keeps a small seeded subset (for smoke runs and tests), ``cap``
limits examples per class in train (keeps ``classifiers train`` within its time budget on 2 CPU cores).
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from empathkit.errors import DataError, ResourceMissing
from empathkit.paths import data_root

Splits = dict[str, tuple[list, list]]

GOEMOTIONS_LABELS_FILE = "emotions.txt"
EPITOME_FILES = {"er": "emotional-reactions-reddit.csv", "ip": "interpretations-reddit.csv",
                 "ex": "explorations-reddit.csv"}
INTENT_LABELS = ("acknowledging", "agreeing", "consoling", "encouraging", "neutral", "questioning", "suggesting",
                 "sympathizing", "wishing")
_INTENT_FILE_FIX = {"acknowleding": "acknowledging"}  # typo in the source file name


def _root(root: str | Path | None) -> Path:
    return data_root(root)  # type: ignore[return-value]


def _need(p: Path) -> Path:
    if not p.exists():
        raise ResourceMissing(f"training data not found: {p} (set EMPATHKIT_DATA to the shared data folder)")
    return p


def subsample(inputs: list, labels: list, n: int | None, seed: int) -> tuple[list, list]:
    if n is None or n >= len(inputs):
        return inputs, labels
    idx = sorted(random.Random(seed).sample(range(len(inputs)), n))
    return [inputs[i] for i in idx], [labels[i] for i in idx]


def cap_per_class(inputs: list, labels: list, cap: int | None, seed: int) -> tuple[list, list]:
    """Keep at most ``cap`` examples of each single label (seeded); multi-label rows are keyed by their first label."""
    if cap is None:
        return inputs, labels
    by: dict[Any, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by[y[0] if isinstance(y, (list, tuple)) and y else y].append(i)
    rng = random.Random(seed)
    keep: list[int] = []
    for idx in by.values():
        keep += idx if len(idx) <= cap else rng.sample(idx, cap)
    keep.sort()
    return [inputs[i] for i in keep], [labels[i] for i in keep]


# --- (a) ED emotion ------------------------------------------------------------------------------------------------

def emotion_input(turns: list[str] | tuple[str, ...], max_turns: int | None = None) -> str:
    """The emotion classifier's input: the context turns (oldest first; only the last ``max_turns`` when given)
    joined with spaces.

    The dialogue context is what a chat server or an evaluated system has (the ED ``situation`` is not shown to
    listeners), so the classifier is trained on it, not on the situation prompt. The whole context is the default:
    the speaker's first turn carries the emotion most clearly, and keeping only the last 3 turns dropped it from
    later turns (measured in docs/classifiers.md). Tokenisation truncates at the right, so the first turns are kept
    when a long context exceeds ``max_seq_length``.
    """
    turns = list(turns)
    if max_turns is not None:
        turns = turns[-max_turns:]
    return " ".join(" ".join(t.split()) for t in turns)


def input_turns_of(clf) -> int | None:
    """The ``max_turns`` an emotion classifier was trained with (its config records it; classifiers trained before
    the record existed used the last 3 turns). An object without a ``config`` (a plug-in or test double with only
    ``predict``) records nothing and gets the current convention, the whole context."""
    config = getattr(clf, "config", None)
    if config is None:
        return None
    extra = getattr(config, "extra", None) or {}
    return extra.get("input_turns", 3)  # null in the config: the whole context


def context_inputs(clf, contexts) -> list[str]:
    """The classifier inputs for dialogue contexts (lists of turns, oldest first), in ``clf``'s recorded convention."""
    n = input_turns_of(clf)
    return [emotion_input(list(c), n) for c in contexts]


def load_emotion(root=None, quick: bool = False, seed: int = 0, cap: int | None = None,
                 max_turns: int | None = None, augment_situation: bool = True) -> tuple[Splits, dict]:
    """ED emotion (32 labels). Train examples: the first speaker turn of each conversation, the context before each
    later listener turn (all turns, or the ``max_turns`` most recent) and, with ``augment_situation``, the situation text.
    Valid/test examples: the context before every listener turn (``every-listener`` protocol, the generation
    setting), so the held-out accuracy is per listener-turn example."""
    from empathkit.data.ed import read_split
    from empathkit.paths import ed_dir

    d = _need(ed_dir(root))
    out: Splits = {}
    for split in ("train", "valid", "test"):
        dialogues = read_split(d, split)
        xs, ys = [], []
        for dlg in dialogues:
            texts = [t.text for t in dlg.turns]
            for i, t in enumerate(dlg.turns):
                if t.role == "listener" and i > 0:
                    xs.append(emotion_input(texts[:i], max_turns))
                    ys.append(dlg.emotion)
            if split == "train" and augment_situation and dlg.situation:
                xs.append(" ".join(dlg.situation.split()))
                ys.append(dlg.emotion)
        out[split] = (xs, ys)
    return _finish(out, quick, seed, cap, {"source": str(d), "input": f"last {max_turns} context turns" if max_turns else "whole context",
                                           "augment_situation": augment_situation})


def _finish(out: Splits, quick: bool, seed: int, cap: int | None, info: dict, quick_sizes=(600, 200, 300)) -> tuple[Splits, dict]:
    if cap is not None:
        out["train"] = cap_per_class(*out["train"], cap, seed)
    if quick:
        for split, n in zip(("train", "valid", "test"), quick_sizes):
            out[split] = subsample(*out[split], n, seed)
    info = dict(info, sizes={k: len(v[0]) for k, v in out.items()}, quick=quick, cap_per_class=cap)
    return out, info


# --- (b) GoEmotions ------------------------------------------------------------------------------------------------

def goemotions_labels(root=None) -> list[str]:
    p = _need(_root(root) / "goemotions" / GOEMOTIONS_LABELS_FILE)
    return [x.strip() for x in p.read_text(encoding="utf-8").split() if x.strip()]


def read_goemotions_tsv(path: Path, labels: list[str]) -> tuple[list[str], list[list[str]]]:
    xs, ys = [], []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise DataError("expected 'text<TAB>label ids<TAB>id'", file=str(path), line=lineno)
            try:
                ids = [int(x) for x in parts[1].split(",") if x.strip()]
                ys.append([labels[i] for i in ids])
            except (ValueError, IndexError):
                raise DataError(f"bad label ids {parts[1]!r}", file=str(path), line=lineno, field="labels") from None
            xs.append(parts[0])
    return xs, ys


def load_goemotions(root=None, quick: bool = False, seed: int = 0, cap: int | None = None) -> tuple[Splits, dict]:
    d = _need(_root(root) / "goemotions")
    labels = goemotions_labels(root)
    out = {s: read_goemotions_tsv(_need(d / f"{f}.tsv"), labels)
           for s, f in (("train", "train"), ("valid", "dev"), ("test", "test"))}
    return _finish(out, quick, seed, cap, {"source": str(d), "labels": labels})


# --- (c) EPITOME ---------------------------------------------------------------------------------------------------

def _split_of(key: str, seed: int) -> str:
    """Stable 80/10/10 split by seeker-post id (all responses to one post stay in one split)."""
    h = int(hashlib.sha1(f"{seed}:{key}".encode()).hexdigest(), 16) % 10
    return "test" if h == 0 else "valid" if h == 1 else "train"


def load_epitome(dimension: str, root=None, quick: bool = False, seed: int = 0, cap: int | None = None) -> tuple[Splits, dict]:
    """EPITOME Reddit (seeker post, response) → level "0"/"1"/"2" for ``dimension`` in er/ip/ex."""
    if dimension not in EPITOME_FILES:
        raise DataError(f"unknown EPITOME dimension {dimension!r}; expected one of {sorted(EPITOME_FILES)}")
    p = _need(_root(root) / "epitome" / EPITOME_FILES[dimension])
    out: Splits = {s: ([], []) for s in ("train", "valid", "test")}
    with p.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        for k, row in enumerate(reader, start=2):
            level = (row.get("level") or "").strip()
            if level not in ("0", "1", "2"):
                raise DataError(f"level must be 0/1/2, got {level!r}", file=str(p), line=k, field="level")
            s = _split_of(row["sp_id"], 0)  # the split is fixed (seed 0) so the three dimensions share it
            out[s][0].append((row["seeker_post"], row["response_post"]))
            out[s][1].append(level)
    return _finish(out, quick, seed, cap, {"source": str(p), "split": "80/10/10 by hash of sp_id (fixed)"},
                   quick_sizes=(400, 100, 150))


# --- (d) EmpatheticIntents ---------------------------------------------------------------------------------------

def read_intent_folder(d: Path) -> tuple[list[str], list[str]]:
    xs, ys = [], []
    for f in sorted(d.glob("*.txt")):
        label = _INTENT_FILE_FIX.get(f.stem, f.stem).lower()
        if label not in INTENT_LABELS:
            raise DataError(f"unexpected intent file {f.name}", file=str(f))
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            if " <SEP> " not in line:
                raise DataError("expected '<label-id> <SEP> <utterance>'", file=str(f), line=lineno)
            xs.append(line.split(" <SEP> ", 1)[1].strip())
            ys.append(label)
    return xs, ys


def load_intent(root=None, quick: bool = False, seed: int = 0, cap: int | None = None) -> tuple[Splits, dict]:
    """EmpatheticIntents lexically-extended listener utterances: 8 intents + neutral (9 labels, lower-cased text)."""
    d = _need(_root(root) / "empathetic_intents" / "lexically_extended_intent_data")
    out = {s: read_intent_folder(_need(d / f)) for s, f in (("train", "train"), ("valid", "validation"), ("test", "test"))}
    return _finish(out, quick, seed, cap, {"source": str(d), "labels": list(INTENT_LABELS)})


def ed_listener_intents(root=None) -> dict[str, list[tuple[str, str]]]:
    """EmpatheticIntents' automatic annotation of ED: ``conv_id → [(actor, label) per utterance, in order]``.

    The turn index of an empathkit Example id (``<conv_id>#<i>``, 0-based over utterances) indexes this list. The
    9 duplicated conversations (suffix `` (1)``) are dropped, as SOURCE.md advises.
    """
    d = _need(_root(root) / "empathetic_intents" / "empatheticdialogues_annotated")
    out: dict[str, list[tuple[str, str]]] = {}
    for f in sorted(d.glob("*.csv")):
        with f.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                cid = row["Dialog_ID"].strip()
                if cid.endswith(" (1)") or row["Type"] != "utterance":
                    continue
                out.setdefault(cid, []).append((row["Actor"].strip(), row["Label"].strip().lower()))
    return out
