"""Agreement between annotators on a fixed sample of ED test dialogues (issue 15, item 4).

Reason tags (speaker turns, the shared :func:`~empathkit.annotate.base.words` tokens): every pair among the lexicon
tagger, the trained ERA (when present) and an LLM (when configured) — token P/R/F1 of ``<em>`` (the first of the pair
as reference; F1 is symmetric), exact span F1 and Cohen's kappa over tokens.
Intents (listener turns): the EmpatheticIntents classifier, the labels EmpatheticIntents' authors released for ED
(their own BERT classifier; turns they labelled with an emotion instead of an intent are left out) and the LLM —
accuracy and Cohen's kappa per pair on the turns both label.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from empathkit.annotate.base import Rejected, words
from empathkit.annotate.scores import label_agreement, span_prf, token_prf


def sample_dialogues(n: int, seed: int = 0, source: str | None = "ed", split: str = "test"):
    from empathkit.data import load_dialogues, subsample

    return subsample(load_dialogues(source, split), n, seed)


def agreement_report(n_dialogues: int = 200, seed: int = 0, *, source: str | None = "ed", era_path: str | None = None,
                     llm_config: dict | None = None, intent_source: str | None = None) -> dict[str, Any]:
    from empathkit.annotate.era import default_era_path
    from empathkit.annotate.intents import ClassifierIntents
    from empathkit.annotate.lexicon import LexiconTagger
    from empathkit.annotate.pipeline import ERATagger

    ds = sample_dialogues(n_dialogues, seed, source)
    sp_tokens = [words(t.text) for d in ds for t in d.turns if t.role == "speaker"]
    sp_tokens = [t for t in sp_tokens if t]
    li_ids = [(f"{d.id}#{i}", t.text) for d in ds for i, t in enumerate(d.turns) if t.role == "listener"]

    taggers: dict[str, Any] = {"lexicon": LexiconTagger()}
    notes: list[str] = []
    era_dir = era_path or default_era_path()
    try:
        from empathkit.annotate.era import load_era

        taggers["era"] = ERATagger(load_era(era_dir))
    except FileNotFoundError as e:
        notes.append(f"ERA not included: {e}")
    labelers: dict[str, Any] = {"intent-classifier": ClassifierIntents(intent_source)}
    if llm_config:
        from empathkit.annotate.llm import LLMClient, LLMIntents, LLMTagger

        client = LLMClient.from_config(llm_config)
        taggers["llm"], labelers["llm"] = LLMTagger(client), LLMIntents(client)
    else:
        notes.append("LLM not included: no endpoint configured (--llm base_url=…)")

    tags, seconds = {}, {}
    for name, tg in taggers.items():
        t0 = time.perf_counter()
        tags[name] = tg.tag(sp_tokens)
        seconds[f"tags:{name}"] = round(time.perf_counter() - t0, 2)
    labels = {}
    for name, lb in labelers.items():
        t0 = time.perf_counter()
        labels[name] = lb.label([txt for _, txt in li_ids])
        seconds[f"intents:{name}"] = round(time.perf_counter() - t0, 2)
    try:
        from empathkit.classifiers.intent_align import reference_intents

        labels["empathetic-intents-release"] = reference_intents([i for i, _ in li_ids])
    except FileNotFoundError as e:
        notes.append(f"EmpatheticIntents release labels not included: {e}")

    tag_pairs = {}
    for a, b in itertools.combinations(tags, 2):
        keep = [i for i in range(len(sp_tokens)) if not isinstance(tags[a][i], Rejected)
                and not isinstance(tags[b][i], Rejected)]
        ga, gb = [tags[a][i] for i in keep], [tags[b][i] for i in keep]
        flat_a, flat_b = [x for s in ga for x in s], [x for s in gb for x in s]
        tag_pairs[f"{a} vs {b}"] = {"token": token_prf(ga, gb), "span": span_prf(ga, gb),
                                    "token_kappa": label_agreement(flat_a, flat_b)["kappa"], "turns": len(keep)}
    intent_pairs = {}
    for a, b in itertools.combinations(labels, 2):
        both = [(x, y) for x, y in zip(labels[a], labels[b], strict=True) if isinstance(x, str) and isinstance(y, str)]
        intent_pairs[f"{a} vs {b}"] = label_agreement([x for x, _ in both], [y for _, y in both])
    em_rate = {n: sum(x == "<em>" for s in t if not isinstance(s, Rejected) for x in s) /
               max(1, sum(len(s) for s in t if not isinstance(s, Rejected))) for n, t in tags.items()}
    summary = {f"tags {k}: token F1": round(v["token"]["f1"], 3) for k, v in tag_pairs.items()}
    summary |= {f"tags {k}: span F1": round(v["span"]["f1"], 3) for k, v in tag_pairs.items()}
    summary |= {f"intents {k}: accuracy": round(v["accuracy"], 3) for k, v in intent_pairs.items()}
    summary |= {f"intents {k}: kappa": round(v["kappa"], 3) for k, v in intent_pairs.items()}
    return {"sample": {"source": source or "ed", "split": "test", "dialogues": len(ds), "seed": seed,
                       "speaker_turns": len(sp_tokens), "listener_turns": len(li_ids)},
            "annotators": {**{n: t.annotator for n, t in taggers.items()},
                           **{f"intents:{n}": lb.annotator for n, lb in labelers.items()}},
            "em_rate": em_rate, "tags": tag_pairs, "intents": intent_pairs, "seconds": seconds, "notes": notes,
            "summary": summary}
