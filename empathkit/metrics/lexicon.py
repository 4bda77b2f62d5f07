"""Lexicon-based metrics: NIDF specificity, intensity/valence/arousal word choice, VADER sentiment.

The lexicons (NRC VAD, NRC Emotion Intensity) and EmpatheticDialogues come from the configured data folder
(``resources.*`` / ``$EMPATHKIT_DATA``); the NIDF document-frequency table is computed once from ED train+valid
and cached under ``empathkit.paths.cache_dir()/metrics/`` (never in the repository).
"""

from __future__ import annotations

import functools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Literal, Sequence

from empathkit.errors import DataError, ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import as_resources, nidf_from_df, nltk_tokenize, tokenize


def _mean(xs: Sequence[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan


def previous_utterance(context: Sequence[str]) -> str | None:
    """The turn the response answers: the last context turn (the speaker's, under ED's protocols)."""
    return context[-1] if context else None


def _need_contexts(batch: Batch, metric: str) -> None:
    if not any(batch.contexts):
        raise ResourceMissing(f"{metric} compares the response with the previous utterance: the input has no contexts")


# ------------------------------------------------------------------------------------------------ user-supplied tables
@functools.lru_cache(maxsize=4)
def _vad_file(path: str) -> dict[str, tuple[float, float, float]]:
    """A VAD lexicon given as a file: JSON ``{word: [v, a, d]}`` (Lee et al.'s / EmPO's ``VAD.json``) or NRC text
    ``word<TAB>v<TAB>a<TAB>d`` with or without a header line; words as written, the last line of a word wins."""
    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"VAD lexicon file not found at {p}")
    if p.suffix.lower() == ".json":
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON: {e.msg}", file=str(p), line=e.lineno) from None
        if not isinstance(raw, dict):
            raise DataError("expected an object word → [valence, arousal, dominance]", file=str(p))
        out = {}
        for w, v in raw.items():
            if not (isinstance(v, list) and len(v) >= 3 and all(isinstance(x, (int, float)) for x in v[:3])):
                raise DataError("expected [valence, arousal, dominance] numbers", file=str(p), field=w)
            out[w] = (float(v[0]), float(v[1]), float(v[2]))
        return out
    out = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t")
            if not line.strip():
                continue
            if len(parts) < 4:
                raise DataError(f"expected 4 tab-separated columns, got {len(parts)}", file=str(p), line=lineno)
            try:
                out[parts[0]] = (float(parts[1]), float(parts[2]), float(parts[3]))
            except ValueError:
                if lineno == 1:  # header
                    continue
                raise DataError("non-numeric score", file=str(p), line=lineno, field="valence/arousal/dominance") from None
    return out


@functools.lru_cache(maxsize=4)
def df_file(path: str, lower: bool = False) -> dict[str, int]:
    """A user-supplied document-frequency table: JSON ``{word: count}`` (also ``{"word_counts": {…}}`` as in Lee
    et al.'s ``ed_counts``, or our cache ``{"df": {…}}``), or a plain-text corpus, one document per line, counted
    here (number of lines containing each NLTK token)."""
    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"NIDF document-frequency table not found at {p}")
    if p.suffix.lower() == ".json":
        try:
            raw = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON: {e.msg}", file=str(p), line=e.lineno) from None
        if isinstance(raw, dict):
            for k in ("word_counts", "df"):
                if isinstance(raw.get(k), dict):
                    raw = raw[k]
                    break
        if not isinstance(raw, dict) or not raw:
            raise DataError("expected a non-empty object word → count", file=str(p))
        bad = next((w for w, c in raw.items() if not isinstance(c, (int, float)) or isinstance(c, bool) or c <= 0), None)
        if bad is not None:
            raise DataError("counts must be positive numbers", file=str(p), field=bad)
        return {w: int(c) for w, c in raw.items()}
    df: Counter = Counter()
    with p.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                df.update(set(nltk_tokenize(line.strip(), lower)))
    if not df:
        raise DataError("empty corpus", file=str(p))
    return dict(df)



# ------------------------------------------------------------------------------------------------ NIDF
def nidf_scores(responses: Sequence[str], table: dict[str, float], oov: float = 1.0, scheme: str = "nltk",
                lower: bool = False) -> list[float]:
    """Mean NIDF over the *distinct* tokens (NLTK, case kept by default) of each response; unseen words count as
    ``oov`` (1.0, the rarest), as in Lee et al.'s ``specificity.py``. An empty response scores NaN."""
    out = []
    for r in responses:
        toks = set(tokenize(r, scheme, lower))
        out.append(sum(table.get(t, oov) for t in toks) / len(toks) if toks else math.nan)
    return out


@register_metric("nidf", family="lexicon",
                 description="specificity: mean NIDF of the response's words, DF from ED train+valid utterances (Lee et al. 2024 / EmPO)")
def nidf(batch: Batch, resources=None, df_table: str | None = None, tokenize_scheme: Literal["nltk", "whitespace"] = "nltk",
         lower: bool = False, oov: float = 1.0) -> MetricResult:
    """``df_table``: a user-supplied DF table (JSON word → number of documents containing it, e.g. Lee et al.'s /
    EmPO's ``ed_counts["word_counts"]`` saved as JSON; or a text corpus, one document per line) instead of the one
    built from ED train+valid. ``tokenize_scheme`` / ``lower``: how responses (and a text corpus) are tokenised;
    ``oov``: NIDF of a word absent from the table."""
    import statistics

    res = as_resources(resources)
    table = nidf_from_df(df_file(str(df_table), lower)) if df_table else res.nidf_table()
    per = nidf_scores(batch.hypotheses, table, oov, tokenize_scheme, lower)
    vals = [x for x in per if not math.isnan(x)]
    agg = {"nidf": _mean(per), "nidf-sd": statistics.pstdev(vals) if len(vals) > 1 else 0.0}
    return MetricResult("nidf", agg, {"nidf": per}, {"df_source": str(df_table or res.ed_path()),
                                                     "tokenize": tokenize_scheme, "lowercase": lower,
                                                     "oov": oov, "vocabulary": len(table), "scale": "[0,1]"})


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
                missing: str | None = None, intensity: Literal["max", "last-line"] = "max",
                vad_file: str | None = None, intensity_file: str | None = None) -> MetricResult:
    """Keys ``wc-intensity``/``wc-valence``/``wc-arousal`` = mean of score(prev) − score(response) (signed, as in
    Lee et al.'s script and EmPO Fig. 5) and ``…-abs`` = mean of |score(prev) − score(response)| (EmPO Table 5 /
    Fig. 10). ``vad_version``: ``v1`` (NRC VAD 2018, [0,1], default — the version Lee et al. used) or ``v2.1``
    ([-1,1]); ``missing`` defaults to ``zero`` for v1 (reproduces the script) and ``skip`` for v2.1 (0 is neutral
    there). Examples without a previous utterance are left out (NaN).

    ``intensity``: a word's ``max`` intensity over its emotions (default) or the score on its ``last-line`` in
    the lexicon file (Lee et al. / EmPO). ``vad_file`` / ``intensity_file``: other lexicon files (e.g. the
    19,971-word ``VAD.json`` and the ``intensity.txt`` those repositories ship), read as written."""
    from empathkit.data.emotions import load_vad_lexicon

    _need_contexts(batch, "word-choice")
    res = as_resources(resources)
    if intensity not in ("max", "last-line"):
        raise ValueError(f"intensity must be max | last-line, got {intensity!r}")
    if vad_file:
        vad_path = Path(vad_file)
    elif res.config.vad_lexicon:
        vad_path = Path(res.config.vad_lexicon)
    elif vad_version == "v1":
        vad_path = res.data_root() / "nrc_vad" / "v1_2018" / "NRC-VAD-Lexicon.txt"
    elif vad_version in ("v2.1", "v2"):
        vad_path = res.data_root() / "nrc_vad" / "v2.1" / "NRC-VAD-Lexicon-v2.1.txt"
    else:
        raise ValueError(f"vad_version must be v1 | v2.1, got {vad_version!r}")
    from empathkit.metrics.resources import _intensity_lexicon

    vad = _vad_file(str(vad_path)) if vad_file else load_vad_lexicon(str(vad_path))
    inten_path = Path(intensity_file) if intensity_file else res.intensity_path()
    inten = _intensity_lexicon(str(inten_path), intensity)
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
                        {"vad_lexicon": str(vad_path), "intensity_lexicon": str(inten_path), "intensity": intensity, "stat": stat,
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
