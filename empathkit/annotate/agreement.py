"""Agreement between annotators on a fixed sample of ED test dialogues (issue 15, item 4).

Reason tags (speaker turns, the shared :func:`~empathkit.annotate.base.words` tokens): every pair among the lexicon
tagger, the trained ERA (when present) and an LLM (when configured) — token P/R/F1 of ``<em>`` (the first of the pair
as reference; F1 is symmetric), exact span F1 and Cohen's kappa over tokens.
Intents (listener turns): the EmpatheticIntents classifier, the labels EmpatheticIntents' authors released for ED
(their own BERT classifier; turns they labelled with an emotion instead of an intent are left out) and the LLM —
accuracy and Cohen's kappa per pair on the turns both label.

An LLM is slow here (one request per turn): ``llm_sample`` limits it to the first N speaker and first N listener
turns of the sample (its pairs are scored on those turns; the other pairs on the whole sample). The report's
``llm`` section names the prompt versions, the endpoint's model (its ``/models`` answer) and counts every failed
reply by reason (``rejected_replies``, retries included) and every turn left without annotation
(``rejected_turns``, by the reason of its last attempt) — rejected turns are left out of the scores, not dropped
silently.
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
                     llm_config: dict | None = None, intent_source: str | None = None,
                     llm_sample: int | None = None) -> dict[str, Any]:
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
    client = None
    if llm_config:
        from empathkit.annotate.llm import LLMClient, LLMIntents, LLMTagger

        client = LLMClient.from_config(llm_config)
        taggers["llm"], labelers["llm"] = LLMTagger(client), LLMIntents(client)
    else:
        notes.append("LLM not included: no endpoint configured (--llm base_url=…)")

    n_sp = min(llm_sample or len(sp_tokens), len(sp_tokens))
    n_li = min(llm_sample or len(li_ids), len(li_ids))
    tags, seconds = {}, {}
    for name, tg in taggers.items():
        t0 = time.perf_counter()
        if name == "llm":  # the turns outside its sample: None, left out of its pairs
            tags[name] = tg.tag(sp_tokens[:n_sp]) + [None] * (len(sp_tokens) - n_sp)
        else:
            tags[name] = tg.tag(sp_tokens)
        seconds[f"tags:{name}"] = round(time.perf_counter() - t0, 2)
    labels = {}
    for name, lb in labelers.items():
        t0 = time.perf_counter()
        texts = [txt for _, txt in li_ids]
        if name == "llm":
            labels[name] = lb.label(texts[:n_li]) + [None] * (len(texts) - n_li)
        else:
            labels[name] = lb.label(texts)
        seconds[f"intents:{name}"] = round(time.perf_counter() - t0, 2)
    try:
        from empathkit.classifiers.intent_align import reference_intents

        labels["empathetic-intents-release"] = reference_intents([i for i, _ in li_ids])
    except FileNotFoundError as e:
        notes.append(f"EmpatheticIntents release labels not included: {e}")

    tag_pairs = {}
    for a, b in itertools.combinations(tags, 2):
        keep = [i for i in range(len(sp_tokens)) if isinstance(tags[a][i], list) and isinstance(tags[b][i], list)]
        ga, gb = [tags[a][i] for i in keep], [tags[b][i] for i in keep]
        flat_a, flat_b = [x for s in ga for x in s], [x for s in gb for x in s]
        tag_pairs[f"{a} vs {b}"] = {"token": token_prf(ga, gb), "span": span_prf(ga, gb),
                                    "token_kappa": label_agreement(flat_a, flat_b)["kappa"], "turns": len(keep)}
    intent_pairs = {}
    for a, b in itertools.combinations(labels, 2):
        both = [(x, y) for x, y in zip(labels[a], labels[b], strict=True) if isinstance(x, str) and isinstance(y, str)]
        intent_pairs[f"{a} vs {b}"] = label_agreement([x for x, _ in both], [y for _, y in both])
    em_rate = {n: sum(x == "<em>" for s in t if isinstance(s, list) for x in s) /
               max(1, sum(len(s) for s in t if isinstance(s, list))) for n, t in tags.items()}
    # a pair with no turn labelled by both (e.g. an LLM whose every reply was rejected) has no score, not a score 0
    notes += [f"tags {k}: no speaker turn tagged by both, no score" for k, v in tag_pairs.items() if not v["turns"]]
    notes += [f"intents {k}: no listener turn labelled by both, no score" for k, v in intent_pairs.items() if not v["n"]]
    tag_pairs_s = {k: v for k, v in tag_pairs.items() if v["turns"]}
    intent_pairs_s = {k: v for k, v in intent_pairs.items() if v["n"]}
    summary = {f"tags {k}: token F1": round(v["token"]["f1"], 3) for k, v in tag_pairs_s.items()}
    summary |= {f"tags {k}: span F1": round(v["span"]["f1"], 3) for k, v in tag_pairs_s.items()}
    summary |= {f"intents {k}: accuracy": round(v["accuracy"], 3) for k, v in intent_pairs_s.items()}
    summary |= {f"intents {k}: kappa": round(v["kappa"], 3) for k, v in intent_pairs_s.items()}
    llm = None
    if client is not None:
        llm = llm_section(client, tags["llm"][:n_sp], labels["llm"][:n_li], seconds)
        summary |= {"llm: rejected speaker turns": llm["rejected_turns"]["tags_total"],
                    "llm: rejected listener turns": llm["rejected_turns"]["intents_total"],
                    "llm: failed replies (retries included)": sum(llm["rejected_replies"].values())}
    return {"sample": {"source": source or "ed", "split": "test", "dialogues": len(ds), "seed": seed,
                       "speaker_turns": len(sp_tokens), "listener_turns": len(li_ids)}, "llm": llm,
            "annotators": {**{n: t.annotator for n, t in taggers.items()},
                           **{f"intents:{n}": lb.annotator for n, lb in labelers.items()}},
            "em_rate": em_rate, "tags": tag_pairs, "intents": intent_pairs, "seconds": seconds, "notes": notes,
            "summary": summary}


def endpoint_models(client) -> Any:
    """The endpoint's ``GET /models`` answer (which model actually answered), or the error as text."""
    try:
        r = client._http.get("/models")
        return r.json() if r.status_code == 200 else f"HTTP {r.status_code}"
    except Exception as e:  # noqa: BLE001 - informative only
        return f"{type(e).__name__}: {e}"


def llm_section(client, tags: list, labels: list, seconds: dict) -> dict[str, Any]:
    from collections import Counter

    from empathkit.annotate.llm import INTENT_PROMPT_VERSION, REASON_PROMPT_VERSION

    rt = Counter(t.reason for t in tags if isinstance(t, Rejected))
    ri = Counter(x.reason for x in labels if isinstance(x, Rejected))
    examples = [{"kind": "tags", "reason": t.reason, "detail": t.detail} for t in tags if isinstance(t, Rejected)][:5]
    examples += [{"kind": "intent", "reason": x.reason, "detail": x.detail}
                 for x in labels if isinstance(x, Rejected)][:5]
    cfg = client.config.model_dump()
    return {"prompt_versions": {"reason": REASON_PROMPT_VERSION, "intent": INTENT_PROMPT_VERSION},
            "config": {k: v for k, v in cfg.items() if k != "api_key_env"},
            "endpoint_models": endpoint_models(client),
            "sample": {"speaker_turns": len(tags), "listener_turns": len(labels)},
            "requests": client.requests, "cached": client.cached, "rejected_replies": dict(client.rejected),
            "rejected_turns": {"tags": dict(rt), "tags_total": sum(rt.values()),
                               "intents": dict(ri), "intents_total": sum(ri.values())},
            "rejected_examples": examples,
            "seconds": {"tags": seconds.get("tags:llm"), "intents": seconds.get("intents:llm")}}
