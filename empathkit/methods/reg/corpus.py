"""REG's retrieval corpus: the listener responses of the ED **train** split with their contexts (Sec. 4.1: "we
employ the training set T as the knowledge source").

Each train example (any protocol; default ``every-listener``, one exemplar per listener turn) becomes an
``Exemplar(id=<example id>, response=<listener turn>, context=<turns before it>, attributes={<four emotion
attributes>, "emotion": <ED label>, "dialogue_id": <conversation id>})``. The ED label is stored for analysis
(Table 5 alignment, the exemplar emotion vote) and is never used to retrieve. Valid / test dialogues never enter the
corpus: the loader reads the train split only and drops any dialogue marked with another split. An exemplar from the
query's own conversation is excluded at search time by dialogue id (``ExemplarIndex.search(exclude_dialogue_ids=…)``).
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from empathkit.errors import DataError
from empathkit.types import Dialogue, Example, Exemplar

log = logging.getLogger(__name__)

CORPUS_SPLIT = "train"
HELD_OUT_SPLITS = ("valid", "test")


def train_dialogues(dialogues: Sequence[Dialogue]) -> list[Dialogue]:
    """The dialogues allowed into the corpus: split ``train`` (or unmarked); ``valid`` / ``test`` are dropped."""
    keep = [d for d in dialogues if d.split not in HELD_OUT_SPLITS]
    dropped = len(dialogues) - len(keep)
    if dropped:
        log.warning("retrieval corpus: dropped %d valid/test dialogue(s); only train dialogues are exemplars", dropped)
    return keep


def corpus_examples(dialogues: Sequence[Dialogue], protocol: str = "every-listener",
                    max_history: int | None = None) -> list[Example]:
    from empathkit.data import to_examples

    exs = to_examples(train_dialogues(dialogues), protocol, max_history)
    if not exs:
        raise DataError("the retrieval corpus is empty: no train dialogue with a listener turn")
    return exs


def load_corpus_examples(data: Any, seed: int = 0) -> list[Example]:
    """The corpus examples of a ``DataConfig`` (``empathkit.runconfig``): its source, protocol, history and
    ``train_limit`` (a seeded subset, emotion-stratified when ``stratify``), always from the train split."""
    from empathkit.data import load_dialogues, subsample

    exs = corpus_examples(load_dialogues(data.source, CORPUS_SPLIT), data.protocol, data.max_history)
    return subsample(exs, data.train_limit, seed, data.stratify)


def to_exemplars(examples: Sequence[Example], attributes: Sequence[dict[str, Any]] | None = None) -> list[Exemplar]:
    """One exemplar per example; ``attributes[i]`` (the emotion attributes) merged with the ED label and dialogue id."""
    if attributes is not None and len(attributes) != len(examples):
        raise ValueError(f"{len(attributes)} attribute rows for {len(examples)} examples")
    out = []
    for i, ex in enumerate(examples):
        attrs = dict(attributes[i]) if attributes is not None else {}
        attrs.update(emotion=ex.emotion, dialogue_id=ex.dialogue_id)
        out.append(Exemplar(id=ex.id, response=ex.target, context=tuple(t.text for t in ex.context), attributes=attrs))
    return out


def dialogue_id(ex: Exemplar) -> str:
    """The conversation an exemplar comes from (its ``dialogue_id`` attribute; else the id before ``#``)."""
    return str(ex.attributes.get("dialogue_id") or ex.id.split("#", 1)[0])
