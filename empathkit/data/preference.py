"""EmPO preference data: chosen = the gold last listener turn, rejected = the last listener turn of a randomly drawn
conversation whose emotion is the Plutchik opposite (EmPO §3 and Table 6, ``emotions.PLUTCHIK_OPPOSITE``).

Protocol: one prompt per conversation (``last-listener``): every turn before the last listener turn is the prompt.
Draws are seeded by ``(seed, epoch)``: the same seed and epoch give the same pairs, another epoch gives a fresh draw
(the paper re-draws the rejected completions for every training epoch). ``k`` > 1 gives k pairs per prompt with k
distinct rejected completions (fewer when the opposite emotion has fewer candidates; those prompts are listed in
the report). Conversations whose opposite emotion has no candidate at all are reported (a counted warning plus the
list in :class:`PreferenceReport`), never dropped silently.

Export format (``to_dataset`` / ``write_jsonl``), one row per pair:

- ``prompt``: chat messages ``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` — the optional system
  prompt, then the context turns (speaker → ``user``, listener → ``assistant``), the same mapping the generators use.
  Messages, not a rendered string, so the trainer applies the model's own chat template (TRL's conversational format).
- ``chosen`` / ``rejected``: the reply texts (plain strings).
- ``emotion``, ``rejected_emotion``, ``rejected_source_id`` (the example id of the conversation the rejected turn came
  from), ``id`` (``<example id>@e<epoch>#<pair index>``), ``example_id``, ``dialogue_id``, ``epoch``, ``pair_index``.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from empathkit.data.emotions import PLUTCHIK_OPPOSITE
from empathkit.errors import DataError
from empathkit.models.chat import example_messages
from empathkit.types import Dialogue, Example

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreferencePair:
    id: str
    example_id: str
    dialogue_id: str
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    emotion: str
    rejected_emotion: str
    rejected_source_id: str
    epoch: int
    pair_index: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class PreferenceReport:
    """What one draw produced, and which prompts could not get (enough) rejected candidates."""

    seed: int
    epoch: int
    k: int
    n_prompts: int
    n_pairs: int
    # prompts without any candidate of the opposite emotion: {"id", "dialogue_id", "emotion", "opposite"}
    missing: list[dict[str, str]] = field(default_factory=list)
    # prompts that got fewer than k pairs: {"id", "emotion", "opposite", "available"}
    short: list[dict] = field(default_factory=list)
    pool_sizes: dict[str, int] = field(default_factory=dict)  # candidates per emotion

    def to_json(self) -> dict:
        return asdict(self)


class PreferenceBuilder:
    """Builds preference pairs for any epoch from last-listener examples.

    ``examples`` are the prompts (one per conversation; use :meth:`from_dialogues` or ``load_examples(...,
    protocol="last-listener")``). ``candidates`` is the pool rejected turns are drawn from (default: the same
    examples). ``opposites`` maps an emotion to the emotion whose replies are rejected (default: EmPO Table 6).
    ``system_prompt`` is a fixed string or a function ``example -> str | None`` (e.g. an SFT template with the emotion).
    """

    def __init__(self, examples: Sequence[Example], *, candidates: Sequence[Example] | None = None, k: int = 1,
                 seed: int = 0, system_prompt: str | Callable[[Example], str | None] | None = None,
                 opposites: Mapping[str, str] = PLUTCHIK_OPPOSITE):
        if k < 1:
            raise DataError(f"k (pairs per prompt) must be >= 1, got {k}", field="k")
        self.examples = list(examples)
        if not self.examples:
            raise DataError("no examples to build preference pairs from")
        seen: dict[str, int] = {}
        for i, ex in enumerate(self.examples):
            if ex.id in seen:
                raise DataError(f"duplicated example id {ex.id!r} (positions {seen[ex.id]} and {i})", field="id")
            seen[ex.id] = i
            if ex.emotion not in opposites:
                raise DataError(f"example {ex.id}: emotion {ex.emotion!r} has no entry in the opposites table",
                                field="emotion")
        self.k, self.seed, self.system_prompt, self.opposites = k, seed, system_prompt, dict(opposites)
        self.pool: dict[str, list[Example]] = {}
        for c in (self.examples if candidates is None else list(candidates)):
            if c.target.strip():
                self.pool.setdefault(c.emotion, []).append(c)

    @classmethod
    def from_dialogues(cls, dialogues: Iterable[Dialogue], max_history: int | None = None, **kwargs) -> "PreferenceBuilder":
        from empathkit.data.protocols import to_examples

        return cls(to_examples(dialogues, "last-listener", max_history), **kwargs)

    def _rng(self, epoch: int) -> random.Random:
        # a string seed is hashed with SHA-512 by `random` (version 2): stable across processes and Python runs
        return random.Random(f"empo-preference:{self.seed}:{epoch}")

    def build(self, epoch: int = 0) -> tuple[list[PreferencePair], PreferenceReport]:
        """The pairs of one epoch's draw, and a report of prompts without (enough) opposite-emotion candidates."""
        rng = self._rng(epoch)
        pairs: list[PreferencePair] = []
        report = PreferenceReport(seed=self.seed, epoch=epoch, k=self.k, n_prompts=len(self.examples), n_pairs=0,
                                  pool_sizes={e: len(v) for e, v in sorted(self.pool.items())})
        for ex in self.examples:
            opp = self.opposites[ex.emotion]
            cands = [c for c in self.pool.get(opp, ()) if c.dialogue_id != ex.dialogue_id]
            if not cands:
                report.missing.append({"id": ex.id, "dialogue_id": ex.dialogue_id, "emotion": ex.emotion,
                                       "opposite": opp})
                continue
            n = min(self.k, len(cands))
            if n < self.k:
                report.short.append({"id": ex.id, "emotion": ex.emotion, "opposite": opp, "available": len(cands)})
            sp = self.system_prompt(ex) if callable(self.system_prompt) else self.system_prompt
            prompt = example_messages(ex, sp)
            for j, ci in enumerate(rng.sample(range(len(cands)), n)):
                c = cands[ci]
                pairs.append(PreferencePair(id=f"{ex.id}@e{epoch}#{j}", example_id=ex.id, dialogue_id=ex.dialogue_id,
                                            prompt=prompt, chosen=ex.target, rejected=c.target, emotion=ex.emotion,
                                            rejected_emotion=c.emotion, rejected_source_id=c.id, epoch=epoch,
                                            pair_index=j))
        report.n_pairs = len(pairs)
        if report.missing:
            by = Counter(f"{m['emotion']}→{m['opposite']}" for m in report.missing)
            log.warning("%d conversation(s) have no candidate reply with the opposite emotion and give no preference "
                        "pair (%s): %s%s", len(report.missing), ", ".join(f"{k} ×{v}" for k, v in sorted(by.items())),
                        ", ".join(m["id"] for m in report.missing[:5]), " …" if len(report.missing) > 5 else "")
        if report.short:
            log.warning("%d prompt(s) got fewer than k=%d pairs (too few opposite-emotion candidates)",
                        len(report.short), self.k)
        return pairs, report

    def build_epochs(self, epochs: int) -> tuple[list[list[PreferencePair]], list[PreferenceReport]]:
        out = [self.build(e) for e in range(epochs)]
        return [p for p, _ in out], [r for _, r in out]


def to_rows(pairs: Iterable[PreferencePair]) -> list[dict]:
    return [p.to_json() for p in pairs]


def to_dataset(pairs: Iterable[PreferencePair]):
    """A Hugging Face ``datasets.Dataset`` with the columns documented in the module docstring."""
    import datasets

    rows = to_rows(pairs)
    if not rows:
        raise DataError("no preference pairs to export (every prompt lacked opposite-emotion candidates?)")
    return datasets.Dataset.from_list(rows)


def write_jsonl(pairs: Iterable[PreferencePair], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", encoding="utf-8") as f:
        for row in to_rows(pairs):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return p


def read_jsonl(path: str | Path) -> list[PreferencePair]:
    from empathkit.runs import iter_jsonl

    names = set(PreferencePair.__dataclass_fields__)
    out = []
    for lineno, row in iter_jsonl(path):
        missing = names - set(row)
        if missing:
            raise DataError(f"missing field(s) {sorted(missing)}", file=str(path), line=lineno,
                            field=sorted(missing)[0])
        out.append(PreferencePair(**{k: row[k] for k in names}))
    return out


__all__ = ["PreferencePair", "PreferenceReport", "PreferenceBuilder", "to_dataset", "to_rows", "write_jsonl",
           "read_jsonl"]
