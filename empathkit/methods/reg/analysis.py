"""Retrieval analyses: REG's Table 5 (emotional alignment of retrieved exemplars) and the exemplar emotion vote.

**Alignment** (Table 5 counts, over 500 test contexts × K = 6, how many retrieved exemplars are "emotionally
aligned" — judged by hand in the paper). Here, automatically: the share of retrieved exemplars whose ED label equals
the query's, and the share in the query's polarity group (MIME's 15 positive / 17 negative grouping,
``empathkit.data.emotions.polarity``). The queries' ED labels are used to *score* the retrieval only, never to
retrieve (LEMPEx filtered its candidates by the gold label at test time; we never do).

**Exemplar emotion vote** (REG's Acc_emo choice): REG has no emotion classifier head, so the emotion it "predicts"
for a context is the score-weighted vote of its retrieved exemplars' ED labels — each exemplar adds
``max(score, 0)`` (plus a tiny rank-based epsilon so zero scores still vote) to its label; ties go to the label of
the higher-ranked exemplar. It is what lets ``acc-emo`` score REG like the methods that predict an emotion.
"""

from __future__ import annotations

from typing import Any, Sequence

from empathkit.data.emotions import polarity
from empathkit.types import Example, Exemplar


def alignment(retrieved: Sequence[Sequence[Exemplar]], query_emotions: Sequence[str]) -> dict[str, Any]:
    """Share of retrieved exemplars with the query's ED emotion / polarity group (micro-averaged over exemplars)."""
    if len(retrieved) != len(query_emotions):
        raise ValueError(f"{len(retrieved)} result lists for {len(query_emotions)} query emotions")
    n = same_emo = same_pol = 0
    for row, emo in zip(retrieved, query_emotions):
        pol = polarity(emo)
        for e in row:
            lab = e.attributes.get("emotion")
            n += 1
            same_emo += lab == emo
            same_pol += bool(lab) and polarity(lab) == pol
    return {"queries": len(query_emotions), "exemplars": n, "emotion": same_emo / n if n else float("nan"),
            "polarity": same_pol / n if n else float("nan"), "emotion_count": same_emo, "polarity_count": same_pol}


def alignment_table(retrievers: dict[str, Any], queries: Sequence[Example], k: int = 6) -> dict[str, dict[str, Any]]:
    """``name → alignment`` for each retriever: ``{"reg": (index, "reg"), "semantic": (index, "semantic"),
    "random": (RandomRetriever, None)}``. Each query excludes its own conversation; only the context is given to
    the retriever."""
    contexts = [[t.text for t in q.context] for q in queries]
    own = [q.dialogue_id for q in queries]
    emotions = [q.emotion for q in queries]
    out = {}
    for name, (retriever, mode) in retrievers.items():
        res = retriever.search(contexts, k=k, mode=mode, exclude_dialogue_ids=own)
        out[name] = alignment(res, emotions)
    return out


def exemplar_emotion_vote(exemplars: Sequence[Exemplar]) -> tuple[str | None, float]:
    """``(label, share of the vote)`` of the exemplars' ED labels weighted by retrieval score; ``(None, 0.0)``
    when no exemplar has a label."""
    votes: dict[str, float] = {}
    first: dict[str, int] = {}
    for rank, e in enumerate(exemplars):
        lab = e.attributes.get("emotion")
        if not lab:
            continue
        votes[lab] = votes.get(lab, 0.0) + max(float(e.score), 0.0) + 1e-6 / (rank + 1)
        first.setdefault(lab, rank)
    if not votes:
        return None, 0.0
    best = max(votes, key=lambda lab: (votes[lab], -first[lab]))
    return best, votes[best] / sum(votes.values())
