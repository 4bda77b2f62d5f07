"""Example protocols: how dialogues become (context, target) generation examples.

- ``last-listener``: one example per conversation — every turn before the last listener turn is context, the last
  listener turn is the target (EmPO convention).
- ``every-listener``: every listener turn is a target with its history (MoEL / CEM / KEMP / ReflectDiffu convention).

``max_history`` keeps only the last N context turns (``None`` = all). Turn annotations travel with the context
turns; the target turn's annotation (e.g. its intent label) becomes ``Example.annotations.target``.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable

from empathkit.registry import Registry
from empathkit.types import Dialogue, Example, ExampleAnnotations

log = logging.getLogger(__name__)

Protocol = Callable[[Dialogue, "int | None"], list[Example]]
PROTOCOLS: Registry[Protocol] = Registry("example protocol")


def _example(d: Dialogue, i: int, max_history: int | None) -> Example:
    ctx = d.turns[:i]
    if max_history is not None and max_history > 0:
        ctx = ctx[-max_history:]
    ann = ExampleAnnotations(target=d.turns[i].annotation) if d.turns[i].annotation else ExampleAnnotations()
    return Example(id=f"{d.id}#{i}", dialogue_id=d.id, emotion=d.emotion, situation=d.situation, context=tuple(ctx),
                   target=d.turns[i].text, profile=d.profile, annotations=ann)


@PROTOCOLS.register("every-listener")
def every_listener(d: Dialogue, max_history: int | None = None) -> list[Example]:
    return [_example(d, i, max_history) for i, t in enumerate(d.turns) if t.role == "listener" and i > 0]


@PROTOCOLS.register("last-listener")
def last_listener(d: Dialogue, max_history: int | None = None) -> list[Example]:
    idx = [i for i, t in enumerate(d.turns) if t.role == "listener" and i > 0]
    return [_example(d, idx[-1], max_history)] if idx else []


def to_examples(dialogues: Iterable[Dialogue], protocol: str = "every-listener",
                max_history: int | None = None) -> list[Example]:
    fn = PROTOCOLS.get(protocol)
    out: list[Example] = []
    skipped = []
    for d in dialogues:
        exs = fn(d, max_history)
        if not exs:
            skipped.append(d.id)
        out.extend(exs)
    if skipped:
        log.warning("%d dialogue(s) have no listener turn after a speaker turn and give no %s example: %s%s",
                    len(skipped), protocol, ", ".join(skipped[:5]), " …" if len(skipped) > 5 else "")
    return out
