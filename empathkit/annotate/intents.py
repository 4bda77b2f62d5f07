"""Listener intents and ReflectDiffu's emotion → intent map (Sec. 3.3.1, Table 1, App. B.1, Fig. 3).

- :class:`ClassifierIntents`: the offline intent annotator — empathkit's trained EmpatheticIntents classifier
  (``empathkit classifiers train intent``) on each listener turn; 8 intents + neutral.
- :func:`intent_map` ``(name_or_path, n)`` → ``{emotion: [top-n intents]}`` for all 32 ED emotions:
  ``paper-table1`` (built in, n ≤ 3), ``derived`` (the map derived from the default lexicon-annotated file), or a JSON
  file written by :func:`save_intent_map`.
- :func:`intent_counts` / :func:`derive_intent_map`: intent frequency per emotion over annotated listener turns,
  ranked by frequency (ties by label order); :func:`plot_heatmap` (Fig. 3, relative frequency per emotion);
  :func:`compare_with_paper` (how many of our top-3 agree with Table 1).

Table 1 as printed covers 27 of the 32 emotions, lists ``faithful`` twice and repeats the ``hopeful, sentimental``
row. Our choices: ``faithful`` keeps its first group; the five missing emotions take the group of their nearest
listed neighbour — ``annoyed``, ``furious``, ``disgusted`` → the angry group; ``devastated``, ``ashamed`` → the sad
group. :data:`PAPER_TABLE1_FILLED` names them, and ``compare_with_paper`` reports on the 27 printed ones.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from empathkit.errors import ConfigError, DataError
from empathkit.types import Dialogue

INTENTS = ("acknowledging", "agreeing", "consoling", "encouraging", "neutral", "questioning", "suggesting",
           "sympathizing", "wishing")  # the EmpatheticIntents labels (= empathkit.classifiers.data.INTENT_LABELS)

# Table 1 of the paper: emotion group → top-3 universal intents, in the printed order
PAPER_TABLE1_GROUPS: tuple[tuple[tuple[str, ...], tuple[str, str, str]], ...] = (
    (("surprised", "proud", "impressed", "nostalgic", "trusting", "faithful", "prepared"),
     ("acknowledging", "encouraging", "neutral")),
    (("excited", "confident", "joyful", "grateful", "content", "caring"),  # "faithful" printed here too
     ("encouraging", "sympathizing", "acknowledging")),
    (("angry", "disappointed"), ("consoling", "suggesting", "encouraging")),
    (("hopeful", "sentimental"), ("encouraging", "wishing", "consoling")),
    (("anticipating", "lonely", "afraid", "anxious", "guilty", "embarrassed", "sad", "apprehensive", "terrified",
      "jealous"), ("consoling", "encouraging", "neutral")),
)
PAPER_TABLE1_FILLED = {"annoyed": "angry", "furious": "angry", "disgusted": "angry", "devastated": "sad",
                       "ashamed": "sad"}  # our choice for the emotions Table 1 does not print


def paper_table1() -> dict[str, list[str]]:
    """All 32 emotions → the paper's top-3 (printed rows first, then :data:`PAPER_TABLE1_FILLED`)."""
    out: dict[str, list[str]] = {}
    for emotions, intents in PAPER_TABLE1_GROUPS:
        for e in emotions:
            out.setdefault(e, list(intents))
    for e, like in PAPER_TABLE1_FILLED.items():
        out[e] = list(out[like])
    return out


def derived_map_path(annotated: str | Path | None = None) -> Path:
    """The map derived from an annotated file sits beside it: ``<file stem>.intent-map.json`` (default: the
    lexicon-annotated ED in the cache)."""
    from empathkit.annotate.store import default_annotated_path

    p = Path(annotated) if annotated else default_annotated_path("lexicon")
    return p.with_name(p.stem + ".intent-map.json")


def intent_map(name_or_path: str | Path = "paper-table1", n: int = 3, exclude: Sequence[str] = ()
               ) -> dict[str, list[str]]:
    """``{emotion: [top-n intents]}`` for the 32 ED emotions (ReflectDiffu's Intent_refer). ``exclude``: intents
    left out of a derived ranking before the top n are taken (e.g. ``questioning``, which Table 1 never lists)."""
    if n < 1:
        raise ConfigError(f"intent map n must be >= 1, got {n}")
    name = str(name_or_path)
    if name == "paper-table1":
        if n > 3:
            raise ConfigError("the paper's Table 1 lists 3 intents per emotion; use n <= 3 or a derived map")
        return {e: v[:n] for e, v in paper_table1().items()}
    p = derived_map_path() if name == "derived" else Path(name)
    if not p.is_file():
        hint = " (run 'empathkit annotate' first: it derives the map)" if name == "derived" else ""
        raise ConfigError(f"unknown intent map {name!r}: not 'paper-table1', 'derived' or a JSON file{hint}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", file=str(p), line=e.lineno) from None
    ranking = data.get("ranking") if isinstance(data, dict) else None
    if not isinstance(ranking, dict):
        raise DataError("expected an object with a 'ranking' {emotion: [intents]}", file=str(p), field="ranking")
    for e, v in ranking.items():
        if not isinstance(v, list) or not set(v) <= set(INTENTS):
            raise DataError(f"must be a list of intents from {list(INTENTS)}", file=str(p), field=f"ranking.{e}")
    return {e: [i for i in v if i not in exclude][:n] for e, v in ranking.items()}


# ------------------------------------------------------------------------------------------------ the classifier
class ClassifierIntents:
    """Intent of each listener turn from the trained EmpatheticIntents classifier (MiniLM + linear head)."""

    name = "intent-classifier"

    def __init__(self, source: str | None = None, batch_size: int = 64):
        from empathkit.classifiers import load_classifier

        self.clf = load_classifier("intent", source)
        self.batch_size = batch_size
        unknown = set(self.clf.labels) - set(INTENTS)
        if unknown:
            raise ConfigError(f"the intent classifier has labels {sorted(unknown)} outside {list(INTENTS)}")
        self.version = "1"

    @property
    def annotator(self) -> str:
        return f"{self.name}@{self.version}"

    def label(self, texts: Sequence[str]) -> list[str]:
        if not texts:
            return []
        return [lab for lab, _ in self.clf.predict(list(texts), batch_size=self.batch_size)]


# ------------------------------------------------------------------------------------------------ the derived map
def intent_counts(dialogues: Iterable[Dialogue]) -> dict[str, Counter]:
    """emotion → Counter(intent) over the annotated listener turns."""
    out: dict[str, Counter] = {}
    for d in dialogues:
        for t in d.turns:
            if t.role == "listener" and t.annotation is not None and t.annotation.intent:
                out.setdefault(d.emotion, Counter())[t.annotation.intent] += 1
    return out


def rank(counts: Counter) -> list[str]:
    return sorted((i for i in INTENTS if counts.get(i, 0) > 0), key=lambda i: (-counts[i], INTENTS.index(i)))


def derive_intent_map(dialogues: Iterable[Dialogue], n: int = 3) -> dict[str, list[str]]:
    return {e: rank(c)[:n] for e, c in sorted(intent_counts(dialogues).items())}


def save_intent_map(dialogues: Iterable[Dialogue], path: str | Path, annotator: str = "") -> dict:
    """Write ``{"annotator", "counts": {emotion: {intent: n}}, "ranking": {emotion: [all intents by frequency]}}``."""
    counts = intent_counts(dialogues)
    data = {"annotator": annotator, "counts": {e: dict(c) for e, c in sorted(counts.items())},
            "ranking": {e: rank(c) for e, c in sorted(counts.items())}}
    Path(path).write_text(json.dumps(data, indent=2), encoding="utf-8")
    return data


def compare_with_paper(ours: dict[str, list[str]], n: int = 3) -> dict:
    """Overlap of our top-n with Table 1's on the 27 emotions the paper prints: per emotion |ours ∩ paper| / n,
    the mean, and how many emotions have the same set."""
    paper = paper_table1()
    printed = [e for e in paper if e not in PAPER_TABLE1_FILLED and e in ours]
    per = {e: len(set(ours[e][:n]) & set(paper[e][:n])) for e in printed}
    return {"emotions": len(printed), "mean_overlap": sum(per.values()) / (n * len(per)) if per else 0.0,
            "same_set": sum(1 for e in printed if set(ours[e][:n]) == set(paper[e][:n])),
            "overlap_per_emotion": per}


def plot_heatmap(counts: dict[str, Counter], path: str | Path, title: str = "") -> Path:
    """Fig. 3: relative frequency of each intent per emotion (rows sum to 1), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    emotions = sorted(counts)
    m = np.array([[counts[e].get(i, 0) for i in INTENTS] for e in emotions], dtype=float)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(emotions) + 1.5))
    im = ax.imshow(m, cmap="Blues", aspect="auto", vmin=0)
    ax.set_xticks(range(len(INTENTS)), INTENTS, rotation=45, ha="right")
    ax.set_yticks(range(len(emotions)), emotions)
    fig.colorbar(im, ax=ax, label="relative frequency")
    ax.set_title(title or "intent frequency per emotion")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
