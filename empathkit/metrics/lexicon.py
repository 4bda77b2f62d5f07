"""Lexicon-based metrics: NIDF specificity, intensity/valence/arousal word choice, VADER sentiment.

The lexicons (NRC VAD, NRC Emotion Intensity) and EmpatheticDialogues come from the configured data folder
(``resources.*`` / ``$EMPATHKIT_DATA``); the NIDF document-frequency table is computed once from ED train+valid
and cached under ``empathkit.paths.cache_dir()/metrics/`` (never in the repository).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from empathkit.errors import ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import as_resources, tokenize


def _mean(xs: Sequence[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan


def previous_utterance(context: Sequence[str]) -> str | None:
    """The turn the response answers: the last context turn (the speaker's, under ED's protocols)."""
    return context[-1] if context else None


def _need_contexts(batch: Batch, metric: str) -> None:
    if not any(batch.contexts):
        raise ResourceMissing(f"{metric} compares the response with the previous utterance: the input has no contexts")


# ------------------------------------------------------------------------------------------------ NIDF
def nidf_scores(responses: Sequence[str], table: dict[str, float], oov: float = 1.0) -> list[float]:
    """Mean NIDF over the *distinct* NLTK tokens (case kept) of each response; unseen words count as ``oov`` (1.0,
    the rarest), as in Lee et al.'s ``specificity.py``. An empty response scores NaN."""
    out = []
    for r in responses:
        toks = set(tokenize(r, "nltk"))
        out.append(sum(table.get(t, oov) for t in toks) / len(toks) if toks else math.nan)
    return out


@register_metric("nidf", family="lexicon",
                 description="specificity: mean NIDF of the response's words, DF from ED train+valid utterances (Lee et al. 2024 / EmPO)")
def nidf(batch: Batch, resources=None) -> MetricResult:
    res = as_resources(resources)
    table = res.nidf_table()
    per = nidf_scores(batch.hypotheses, table)
    import statistics

    vals = [x for x in per if not math.isnan(x)]
    agg = {"nidf": _mean(per), "nidf-sd": statistics.pstdev(vals) if len(vals) > 1 else 0.0}
    return MetricResult("nidf", agg, {"nidf": per}, {"df_source": str(res.ed_path()), "tokenize": "nltk (case kept)",
                                                     "oov": 1.0, "vocabulary": len(table), "scale": "[0,1]"})


# ------------------------------------------------------------------------------------------------ word choice
def _stat(values: list[float], how: str) -> float:
    if not values:
        return 0.0
    return max(values) if how == "max" else sum(values) / len(values)


def iva_scores(text: str, vad: dict, intensity: dict, stat: str = "max", missing: str = "zero") -> tuple[float, float, float]:
    """(intensity, valence, arousal) of a text over its lower-cased NLTK tokens.

    ``missing='zero'``: words absent from a lexicon count as 0 (Lee et al.'s ``vad.py``); ``'skip'``: ignored.
    ``stat``: ``max`` (Lee et al. report the max) or ``mean``.
    """
    toks = tokenize(text, "nltk", lower=True)
    if missing == "zero":
        v = [vad.get(t, (0.0, 0.0, 0.0))[0] for t in toks]
        a = [vad.get(t, (0.0, 0.0, 0.0))[1] for t in toks]
        i = [intensity.get(t, 0.0) for t in toks]
    else:
        v = [vad[t][0] for t in toks if t in vad]
        a = [vad[t][1] for t in toks if t in vad]
        i = [intensity[t] for t in toks if t in intensity]
    return _stat(i, stat), _stat(v, stat), _stat(a, stat)


@register_metric("word-choice", family="lexicon", higher_is_better=False,
                 description="intensity/valence/arousal distance previous utterance vs response, signed and absolute (EmPO Table 5, App. C)")
def word_choice(batch: Batch, resources=None, vad_version: str = "v1", stat: str = "max",
                missing: str | None = None) -> MetricResult:
    """Keys ``wc-intensity``/``wc-valence``/``wc-arousal`` = mean of score(prev) − score(response) (signed, as in
    Lee et al.'s script and EmPO Fig. 5) and ``…-abs`` = mean of |score(prev) − score(response)| (EmPO Table 5 /
    Fig. 10). ``vad_version``: ``v1`` (NRC VAD 2018, [0,1], default — the version Lee et al. used) or ``v2.1``
    ([-1,1]); ``missing`` defaults to ``zero`` for v1 (reproduces the script) and ``skip`` for v2.1 (0 is neutral
    there). Examples without a previous utterance are left out (NaN)."""
    from empathkit.data.emotions import load_vad_lexicon

    _need_contexts(batch, "word-choice")
    res = as_resources(resources)
    if res.config.vad_lexicon:
        vad_path = Path(res.config.vad_lexicon)
    elif vad_version == "v1":
        vad_path = res.data_root() / "nrc_vad" / "v1_2018" / "NRC-VAD-Lexicon.txt"
    elif vad_version in ("v2.1", "v2"):
        vad_path = res.data_root() / "nrc_vad" / "v2.1" / "NRC-VAD-Lexicon-v2.1.txt"
    else:
        raise ValueError(f"vad_version must be v1 | v2.1, got {vad_version!r}")
    vad = load_vad_lexicon(str(vad_path))
    inten = res.intensity_lexicon()
    miss = missing or ("zero" if vad_version == "v1" else "skip")
    keys = ("intensity", "valence", "arousal")
    per: dict[str, list[float]] = {f"wc-{k}{s}": [] for s in ("", "-abs") for k in keys}
    for h, ctx in zip(batch.hypotheses, batch.contexts):
        prev = previous_utterance(ctx)
        if prev is None:
            for k in per:
                per[k].append(math.nan)
            continue
        p = iva_scores(prev, vad, inten, stat, miss)
        r = iva_scores(h, vad, inten, stat, miss)
        for k, a, b in zip(keys, p, r):
            per[f"wc-{k}"].append(a - b)
            per[f"wc-{k}-abs"].append(abs(a - b))
    return MetricResult("word-choice", {k: _mean(v) for k, v in per.items()}, per,
                        {"vad_lexicon": str(vad_path), "intensity_lexicon": str(res.intensity_path()), "stat": stat,
                         "missing_words": miss, "previous": "last context turn", "tokenize": "nltk lower-cased",
                         "sign": "score(previous) - score(response)"})


# ------------------------------------------------------------------------------------------------ VADER
@register_metric("vader", family="lexicon", description="VADER compound sentiment of the response, and |Δ| to the previous utterance")
def vader(batch: Batch, resources=None) -> MetricResult:
    res = as_resources(resources)
    sia = res.vader()
    comp = [float(sia.polarity_scores(h)["compound"]) for h in batch.hypotheses]
    per = {"vader-compound": comp}
    if any(batch.contexts):
        diffs = []
        for c, ctx in zip(comp, batch.contexts):
            prev = previous_utterance(ctx)
            diffs.append(abs(float(sia.polarity_scores(prev)["compound"]) - c) if prev is not None else math.nan)
        per["vader-diff-abs"] = diffs
    return MetricResult("vader", {k: _mean(v) for k, v in per.items()}, per,
                        {"implementation": "vaderSentiment", "scale": "compound [-1,1]"})
