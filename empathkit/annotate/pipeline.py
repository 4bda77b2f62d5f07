"""Annotators → the annotated dataset: resumable, one progress bar, counts of annotated / skipped turns.

``build_annotator(name, …)`` makes the pair (reason tagger, intent labeler) for ``lexicon`` (offline default:
:class:`~empathkit.annotate.lexicon.LexiconTagger` + the EmpatheticIntents classifier), ``era`` (the trained ERA +
the classifier) or ``llm`` (an OpenAI-compatible endpoint for both). ``annotate(dialogues, annotator, path)``
writes every dialogue not yet in ``path``:

- speaker turns: tokens (:func:`~empathkit.annotate.base.words`) + the tagger's tags;
- listener turns: tokens, all ``<noem>``, + the labeler's intent;
- a dialogue with an empty turn is not written (the JSONL format has none) and is counted under
  ``skipped_dialogues`` ("empty turn text") and ``skipped_turns`` ("empty text");
- a dialogue with any :class:`~empathkit.annotate.base.Rejected` turn is not written (a later run retries it) and
  is counted under ``rejected_turns`` / ``skipped_dialogues`` with the reasons.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from empathkit.annotate.base import IntentLabeler, ReasonTagger, Rejected, words
from empathkit.types import REASON_TAGS, Dialogue, Turn, TurnAnnotation

ANNOTATORS = ("lexicon", "era", "llm")


@dataclass
class Annotator:
    tagger: ReasonTagger
    intents: IntentLabeler
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.tagger.annotator}+{self.intents.annotator}"


@dataclass
class AnnotateReport:
    path: Path
    annotator: str
    dialogues_total: int = 0
    resumed: int = 0  # already in the file
    written: int = 0
    annotated_turns: int = 0
    skipped_turns: Counter = field(default_factory=Counter)  # reason → turns written with empty annotation
    rejected_turns: Counter = field(default_factory=Counter)  # reason → turns whose annotation was rejected
    skipped_dialogues: Counter = field(default_factory=Counter)
    rejected_replies: dict[str, int] = field(default_factory=dict)  # LLM: every rejected reply, retries included
    seconds: float = 0.0

    def counts(self) -> dict[str, Any]:
        return {"dialogues_written": self.written, "annotated_turns": self.annotated_turns,
                "skipped_turns": dict(self.skipped_turns), "rejected_turns": dict(self.rejected_turns),
                "skipped_dialogues": dict(self.skipped_dialogues), "rejected_replies": dict(self.rejected_replies)}

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "annotator": self.annotator, "dialogues_total": self.dialogues_total,
                "resumed": self.resumed, "seconds": round(self.seconds, 2), "counts": self.counts()}


def build_annotator(name: str = "lexicon", *, era_path: str | None = None, intent_source: str | None = None,
                    llm_config: dict | None = None, llm_intents: bool = True) -> Annotator:
    from empathkit.errors import ConfigError

    if name not in ANNOTATORS:
        raise ConfigError(f"unknown annotator {name!r}; choose one of {list(ANNOTATORS)}")
    if name == "llm":
        from empathkit.annotate.llm import LLMClient, LLMIntents, LLMTagger

        client = LLMClient.from_config(llm_config or {})
        labeler = LLMIntents(client) if llm_intents else _classifier(intent_source)
        return Annotator(LLMTagger(client), labeler, name)
    if name == "era":
        from empathkit.annotate.era import load_era

        return Annotator(ERATagger(load_era(era_path)), _classifier(intent_source), name)
    from empathkit.annotate.lexicon import LexiconTagger

    return Annotator(LexiconTagger(), _classifier(intent_source), name)


def _classifier(source: str | None):
    from empathkit.annotate.intents import ClassifierIntents

    return ClassifierIntents(source)


class ERATagger:
    """A trained ERA as a reason tagger."""

    def __init__(self, era, batch_size: int = 32):
        self.era, self.batch_size = era, batch_size
        self.annotator = era.annotator

    def tag(self, tokens: Sequence[Sequence[str]]) -> list[list[str]]:
        return self.era.tag([list(t) for t in tokens], batch_size=self.batch_size)


def _valid_tags(tags: object, n: int) -> bool:
    return isinstance(tags, list) and len(tags) == n and all(t in REASON_TAGS for t in tags)


def annotate_batch(dialogues: Sequence[Dialogue], annotator: Annotator, report: AnnotateReport) -> list[Dialogue]:
    """Annotate a batch; returns the dialogues to write (fully annotated ones), updating ``report``'s counts."""
    keep = []
    for d in dialogues:  # the JSONL format has no empty turns: such a dialogue is skipped and counted
        empty = sum(1 for t in d.turns if not t.text.strip())
        if empty:
            report.skipped_turns["empty text"] += empty
            report.skipped_dialogues["empty turn text"] += 1
        else:
            keep.append(d)
    dialogues = keep
    speaker, listener = [], []  # (dialogue index, turn index, tokens)
    for di, d in enumerate(dialogues):
        for ti, t in enumerate(d.turns):
            (speaker if t.role == "speaker" else listener).append((di, ti, words(t.text)))
    tags = annotator.tagger.tag([tok for _, _, tok in speaker if tok]) if speaker else []
    intents = annotator.intents.label([dialogues[di].turns[ti].text for di, ti, _ in listener]) if listener else []
    n_tag = sum(1 for _, _, tok in speaker if tok)
    if len(tags) != n_tag or len(intents) != len(listener):
        raise RuntimeError(f"annotator {annotator.id} returned {len(tags)} tag rows for {n_tag} turns and "
                           f"{len(intents)} intents for {len(listener)} turns")
    result: dict[tuple[int, int], TurnAnnotation | Rejected] = {}
    it = iter(tags)
    for di, ti, tok in speaker:
        if not tok:  # text without any token (cannot happen with the NLTK tokenizer; kept for custom ones)
            result[di, ti] = TurnAnnotation((), (), annotator=annotator.tagger.annotator)
            report.skipped_turns["no tokens"] += 1
            continue
        tg = next(it)
        if isinstance(tg, Rejected):
            result[di, ti] = tg
        elif not _valid_tags(tg, len(tok)):  # a tagger bug must not write misaligned tags
            result[di, ti] = Rejected("wrong-tags", f"{len(tg)} tags for {len(tok)} tokens")
        else:
            result[di, ti] = TurnAnnotation(tuple(tok), tuple(tg), annotator=annotator.tagger.annotator)
    for (di, ti, tok), lab in zip(listener, intents, strict=True):
        if isinstance(lab, Rejected):
            result[di, ti] = lab
            continue
        if not tok:
            report.skipped_turns["no tokens"] += 1
        result[di, ti] = TurnAnnotation(tuple(tok), ("<noem>",) * len(tok), intent=lab,
                                        annotator=annotator.intents.annotator)
    out = []
    for di, d in enumerate(dialogues):
        anns = [result[di, ti] for ti in range(len(d.turns))]
        bad = [a for a in anns if isinstance(a, Rejected)]
        if bad:
            for a in bad:
                report.rejected_turns[a.reason] += 1
            report.skipped_dialogues["rejected annotation"] += 1
            continue
        report.annotated_turns += sum(1 for a in anns if a.tokens)
        out.append(Dialogue(d.id, d.emotion, d.situation, tuple(Turn(t.role, t.text, a) for t, a in zip(d.turns, anns, strict=True)),
                            d.split, d.profile, d.source))
    return out


def annotate(dialogues: Sequence[Dialogue], annotator: Annotator, path: str | Path, *, overwrite: bool = False,
             batch_size: int = 64, progress: bool = True, source: str = "", derive_map: bool = True) -> AnnotateReport:
    """Annotate the dialogues not yet in ``path`` (resume), write the sidecar meta, derive the intent map."""
    from empathkit.annotate.store import AnnotatedWriter

    t0 = time.perf_counter()
    writer = AnnotatedWriter(path, annotator.id, overwrite=overwrite, source=source)
    todo = [d for d in dialogues if d.id not in writer.done]
    report = AnnotateReport(Path(path), annotator.id, dialogues_total=len(dialogues),
                            resumed=len(dialogues) - len(todo))
    base = _rejected(annotator)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(dialogues), initial=len(dialogues) - len(todo), desc=f"annotate ({annotator.name})",
                   unit="dialogue")
    try:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            for d in annotate_batch(batch, annotator, report):
                writer.write(d)
                report.written += 1
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        report.rejected_replies = dict(_rejected(annotator) - base)
        report.seconds = time.perf_counter() - t0
        writer.close({"ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "annotator": annotator.id,
                      "source": source,
                      "dialogues_total": len(dialogues), "resumed": report.resumed, "seconds": round(report.seconds, 2),
                      "counts": report.counts()})
    if derive_map and writer.done:
        derive_maps(path)
    return report


def _rejected(annotator: Annotator) -> Counter:
    """Rejected LLM replies so far (the tagger and the labeler may share one client's counter)."""
    counters = {id(c): c for c in (getattr(p, "rejected", None) for p in (annotator.tagger, annotator.intents))
                if c is not None}
    return sum((Counter(c) for c in counters.values()), Counter())


def derive_maps(path: str | Path) -> dict:
    """Intent map + heatmap (Fig. 3) + comparison with Table 1 from an annotated file (train split when it has
    one), written beside it: ``<stem>.intent-map.json`` / ``.png`` / ``-vs-paper.json``."""
    import json

    from empathkit.annotate.intents import (compare_with_paper, derived_map_path, intent_counts, intent_map,
                                            plot_heatmap, save_intent_map)
    from empathkit.annotate.store import read_annotated, read_meta

    ds = read_annotated(path, split="train") or read_annotated(path)
    out = derived_map_path(path)
    name = read_meta(path).get("annotator", "")
    save_intent_map(ds, out, annotator=name)
    plot_heatmap(intent_counts(ds), out.with_suffix(".png"), title=f"intent frequency per emotion ({Path(path).stem})")
    cmp = compare_with_paper(intent_map(out, 3))
    cmp["without_questioning"] = compare_with_paper(intent_map(out, 3, exclude=("questioning",)))
    out.with_name(out.stem + "-vs-paper.json").write_text(json.dumps(cmp, indent=2), encoding="utf-8")
    return cmp


def annotate_source(source: str | None = "ed", splits: Sequence[str] = ("train", "valid", "test"), *,
                    annotator: str = "lexicon", out: str | Path | None = None, limit: int | None = None,
                    seed: int = 0, overwrite: bool = False, batch_size: int = 64, progress: bool = True,
                    era_path: str | None = None, intent_source: str | None = None, llm_config: dict | None = None,
                    llm_intents: bool = True) -> AnnotateReport:
    """Read ``splits`` of ``source`` (ED by default; a JSONL file or ED folder), optionally a seeded subset of
    ``limit`` dialogues per split, and annotate them into ``out`` (default :func:`default_annotated_path`)."""
    from empathkit.annotate.store import default_annotated_path
    from empathkit.data import load_dialogues, subsample

    ann = build_annotator(annotator, era_path=era_path, intent_source=intent_source, llm_config=llm_config,
                          llm_intents=llm_intents)
    dialogues: list[Dialogue] = []
    for sp in splits:
        ds = load_dialogues(source, sp)
        ds = [d if d.split else Dialogue(d.id, d.emotion, d.situation, d.turns, sp, d.profile, d.source) for d in ds]
        dialogues += subsample(ds, limit, seed)
    path = Path(out) if out else default_annotated_path(annotator)
    return annotate(dialogues, ann, path, overwrite=overwrite, batch_size=batch_size, progress=progress,
                    source=f"{source or 'ed'}:{','.join(splits)}" + (f" limit={limit} seed={seed}" if limit else ""))
