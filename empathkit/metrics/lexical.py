"""Lexical-overlap metrics: BLEU in five named conventions, ROUGE-1/2/L, METEOR.

BLEU-n everywhere is the *cumulative* BLEU with uniform weights 1/n over 1..n-grams (not the individual n-gram
precision). Scales follow the convention each variant reproduces (see ``docs/metrics/bleu*.md``):

==================  =========================================  ===========  ==========  =======
name                implementation                             tokens       level       scale
==================  =========================================  ===========  ==========  =======
``bleu``            sacrebleu ``corpus_bleu`` (13a, exp smooth) sacrebleu    corpus      ×100
``bleu-nltk``       NLTK ``corpus_bleu``, no smoothing         NLTK, lower  corpus      [0, 1]
``bleu-moses``      Moses ``multi-bleu.perl -lc`` (via          NLTK, joined corpus      ×100
                    sacrebleu ``tokenize=none``, lowercase,    by spaces
                    no smoothing) — MoEL / MIME / CARE
``bleu-kemp``       NLTK ``corpus_bleu``, no smoothing — KEMP  whitespace   corpus      ×100
``bleu-sent``       mean NLTK ``sentence_bleu``, smoothing      NLTK, lower  sentence    [0, 1]
                    method4 — ECG-LoRA appendix
``bleu-macro``      mean unsmoothed sentence BLEU-4 + mean      whitespace   macro       ×100
                    n-gram precisions — EmpDG / KEMP ma_bleu
==================  =========================================  ===========  ==========  =======
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Sequence

from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import tokenize, wordnet_available

ORDERS = (1, 2, 3, 4)


def _weights(n: int) -> tuple[float, ...]:
    return tuple([1.0 / n] * n)


def _orders(orders) -> tuple[int, ...]:
    out = tuple(int(n) for n in (orders or ORDERS))
    if not out or any(n < 1 or n > 4 for n in out):
        raise ValueError(f"BLEU orders must be within 1..4, got {orders!r}")
    return out


# ------------------------------------------------------------------------------------------------ BLEU variants
def sacrebleu_corpus(hyps: Sequence[str], refs: Sequence[str], n: int, **kw) -> float:
    from sacrebleu.metrics import BLEU

    return BLEU(max_ngram_order=n, **kw).corpus_score(list(hyps), [list(refs)]).score


@register_metric("bleu", family="lexical", description="corpus BLEU-1..4, sacrebleu (13a tokeniser, exp smoothing), ×100")
def bleu(batch: Batch, resources=None, orders=ORDERS, tokenize: str = "13a", lowercase: bool = False,
         smooth_method: str = "exp") -> MetricResult:
    agg = {f"bleu-{n}": sacrebleu_corpus(batch.hypotheses, batch.references, n, tokenize=tokenize,
                                         lowercase=lowercase, smooth_method=smooth_method)
           for n in _orders(orders)}
    return MetricResult("bleu", agg, None, {"implementation": "sacrebleu", "tokenize": tokenize, "lowercase": lowercase,
                                            "smooth_method": smooth_method, "scale": "x100", "level": "corpus"})


def _nltk_corpus_bleu(hyp_toks, ref_toks, n: int) -> float:
    from nltk.translate.bleu_score import corpus_bleu

    with warnings.catch_warnings():  # NLTK warns (and returns 0) when an n-gram order has no match
        warnings.simplefilter("ignore")
        return float(corpus_bleu([[r] for r in ref_toks], hyp_toks, weights=_weights(n)))


@register_metric("bleu-nltk", family="lexical", description="corpus BLEU-1..4, NLTK corpus_bleu, NLTK tokens lower-cased, no smoothing, [0,1]")
def bleu_nltk(batch: Batch, resources=None, orders=ORDERS, lower: bool = True) -> MetricResult:
    H = [tokenize(h, "nltk", lower) for h in batch.hypotheses]
    R = [tokenize(r, "nltk", lower) for r in batch.references]
    agg = {f"bleu-nltk-{n}": _nltk_corpus_bleu(H, R, n) for n in _orders(orders)}
    return MetricResult("bleu-nltk", agg, None, {"implementation": "nltk.corpus_bleu", "tokenize": "nltk",
                                                 "lowercase": lower, "smoothing": "none", "scale": "[0,1]"})


@register_metric("bleu-kemp", family="lexical", description="corpus BLEU-1..4, KEMP convention: whitespace tokens, NLTK corpus_bleu, no smoothing, ×100")
def bleu_kemp(batch: Batch, resources=None, orders=ORDERS, lower: bool = False) -> MetricResult:
    H = [tokenize(h, "whitespace", lower) for h in batch.hypotheses]
    R = [tokenize(r, "whitespace", lower) for r in batch.references]
    agg = {f"bleu-kemp-{n}": 100.0 * _nltk_corpus_bleu(H, R, n) for n in _orders(orders)}
    return MetricResult("bleu-kemp", agg, None, {"implementation": "nltk.corpus_bleu", "tokenize": "whitespace",
                                                 "lowercase": lower, "smoothing": "none", "scale": "x100"})


def moses_pretokenize(text: str, scheme: str = "nltk") -> str:
    """MoEL/MIME/CARE feed ``multi-bleu.perl`` text already tokenised by NLTK and joined by spaces."""
    return " ".join(tokenize(text, scheme)) if scheme != "none" else text


@register_metric("bleu-moses", family="lexical", description="corpus BLEU-1..4, Moses multi-bleu.perl -lc convention (MoEL/MIME/CARE), ×100")
def bleu_moses(batch: Batch, resources=None, orders=ORDERS, pretokenize: str = "nltk") -> MetricResult:
    """``multi-bleu.perl -lc``: lower-case, split on whitespace, corpus n-gram precisions, closest reference length,
    BP = exp(1 − r/c) when c < r, BLEU = 0 when any precision is 0 (no smoothing). sacrebleu with
    ``tokenize='none', lowercase=True, smooth_method='none'`` computes exactly this (pinned by a test against a
    line-by-line port of the Perl script)."""
    H = [moses_pretokenize(h, pretokenize) for h in batch.hypotheses]
    R = [moses_pretokenize(r, pretokenize) for r in batch.references]
    agg = {f"bleu-moses-{n}": sacrebleu_corpus(H, R, n, tokenize="none", lowercase=True, smooth_method="none",
                                               force=True)
           for n in _orders(orders)}
    info = {"implementation": "sacrebleu (multi-bleu.perl -lc equivalent)", "pretokenize": pretokenize,
            "lowercase": True, "smoothing": "none", "scale": "x100"}
    if pretokenize != "none" and H:
        # text that NLTK leaves (almost) unchanged was tokenised already (MoEL / MIME release such files):
        # re-tokenising still changes a few lines ("10.00", "..."), and the last BLEU digit with them
        same = sum(h == x.strip() for h, x in zip(H, batch.hypotheses)) / len(H)
        if 0.9 <= same < 1.0:
            info["looks_pretokenized"] = round(same, 3)
            logging.getLogger(__name__).warning(
                "bleu-moses: %.0f%% of the hypotheses are already NLTK-tokenised; MoEL / MIME scored such files "
                "as they are: --opt bleu-moses.pretokenize=none (preset moel-paper)", 100 * same)
    return MetricResult("bleu-moses", agg, None, info)


@register_metric("bleu-sent", family="lexical", description="mean sentence BLEU-1..4, NLTK sentence_bleu, smoothing method4, uniform weights (ECG-LoRA), [0,1]")
def bleu_sent(batch: Batch, resources=None, orders=ORDERS, lower: bool = True, tokenize_scheme: str = "nltk") -> MetricResult:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    smooth = SmoothingFunction().method4
    per: dict[str, list[float]] = {f"bleu-sent-{n}": [] for n in _orders(orders)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h, r in zip(batch.hypotheses, batch.references):
            ht, rt = tokenize(h, tokenize_scheme, lower), tokenize(r, tokenize_scheme, lower)
            for n in _orders(orders):
                # NLTK's method4 divides by log(len(hypothesis)): an empty hypothesis scores 0 instead of crashing
                s = float(sentence_bleu([rt], ht, weights=_weights(n), smoothing_function=smooth)) if ht else 0.0
                per[f"bleu-sent-{n}"].append(s)
    agg = {k: _mean(v) for k, v in per.items()}
    return MetricResult("bleu-sent", agg, per, {"implementation": "nltk.sentence_bleu", "smoothing": "method4",
                                                "tokenize": tokenize_scheme, "lowercase": lower, "scale": "[0,1]"})


def macro_sentence_bleu(hyp: Sequence[str], ref: Sequence[str], max_order: int = 4) -> tuple[float, list[float]]:
    """Unsmoothed sentence BLEU-``max_order`` and its n-gram precisions, as EmpDG's / KEMP's ``get_bleu`` computes
    them per example (the TensorFlow-NMT ``compute_bleu`` on one sentence): clipped precisions from NLTK's
    ``modified_precision``; any zero precision (or a hypothesis shorter than n) → 0; BP = exp(1 − r/c) when
    c ≤ r, with the original's ``ratio + 1e-16`` (so an empty hypothesis gets BP 0 rather than an error)."""
    from nltk.translate.bleu_score import modified_precision

    precisions = []
    for n in range(1, max_order + 1):
        if len(hyp) - n + 1 > 0:
            precisions.append(float(modified_precision([list(ref)], list(hyp), n)))
        else:
            precisions.append(0.0)
    if min(precisions) > 0:
        geo = math.exp(sum(math.log(p) / max_order for p in precisions))
    else:
        geo = 0.0
    ratio = len(hyp) / len(ref) if ref else float("inf")
    bp = 1.0 if ratio > 1.0 else math.exp(1 - 1.0 / (ratio + 1e-16))
    return geo * bp, precisions


@register_metric("bleu-macro", family="lexical", description="macro average of unsmoothed sentence BLEU-4 + averaged n-gram precisions, whitespace tokens, ×100 (EmpDG / KEMP ma_bleu)")
def bleu_macro(batch: Batch, resources=None, lower: bool = False, scale: float = 100.0) -> MetricResult:
    """EmpDG ``result_analysis.py`` / KEMP ``get_bleu`` "ma_bleu": per example, BLEU-4 without smoothing on
    ``str.split()`` tokens; the mean over examples (``bleu-macro``) and the means of the per-example 1..4-gram
    precisions (``bleu-macro-p1`` … ``-p4``, the "BLEU-1..4" columns of those tables). Not a corpus BLEU."""
    per: dict[str, list[float]] = {"bleu-macro": [], **{f"bleu-macro-p{n}": [] for n in ORDERS}}
    for h, r in zip(batch.hypotheses, batch.references):
        b, ps = macro_sentence_bleu(tokenize(h, "whitespace", lower), tokenize(r, "whitespace", lower))
        per["bleu-macro"].append(scale * b)
        for n, p in zip(ORDERS, ps):
            per[f"bleu-macro-p{n}"].append(scale * p)
    return MetricResult("bleu-macro", {k: _mean(v) for k, v in per.items()}, per,
                        {"implementation": "per-sentence tf-nmt compute_bleu (nltk modified_precision)",
                         "tokenize": "whitespace", "lowercase": lower, "smoothing": "none", "level": "macro",
                         "scale": scale})


# ------------------------------------------------------------------------------------------------ ROUGE, METEOR
@register_metric("rouge", family="lexical", description="ROUGE-1/2/L F1 (rouge-score, Porter stemming), mean over sentences, [0,1]")
def rouge(batch: Batch, resources=None, types: Sequence[str] = ("rouge1", "rouge2", "rougeL"),
          use_stemmer: bool = True) -> MetricResult:
    from rouge_score import rouge_scorer

    names = {"rouge1": "rouge-1", "rouge2": "rouge-2", "rougeL": "rouge-l", "rougeLsum": "rouge-lsum"}
    types = list(types)
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    per: dict[str, list[float]] = {names.get(t, t): [] for t in types}
    for h, r in zip(batch.hypotheses, batch.references):
        s = scorer.score(r, h)  # score(target, prediction)
        for t in types:
            per[names.get(t, t)].append(float(s[t].fmeasure))
    return MetricResult("rouge", {k: _mean(v) for k, v in per.items()}, per,
                        {"implementation": "rouge-score", "use_stemmer": use_stemmer, "measure": "F1", "scale": "[0,1]"})


class _NoWordNet:
    """Stands in for NLTK's WordNet reader when its data is absent: no synonyms → METEOR exact + stem matching."""

    @staticmethod
    def synsets(word, *args, **kwargs):
        return []


@register_metric("meteor", family="lexical", description="METEOR (NLTK), mean over sentences; exact+stem, + WordNet synonyms when WordNet data is installed")
def meteor(batch: Batch, resources=None, synonyms: str = "auto", lower: bool = True) -> MetricResult:
    """``synonyms``: ``auto`` (use WordNet if installed), ``never`` (exact + stem only), ``always`` (fail if absent)."""
    from nltk.translate.meteor_score import meteor_score

    have = wordnet_available()
    if synonyms == "always" and not have:
        from empathkit.errors import ResourceMissing

        raise ResourceMissing("METEOR with synonyms needs NLTK's WordNet data (nltk.download('wordnet'))")
    use_wn = have and synonyms != "never"
    if use_wn:
        from nltk.corpus import wordnet as wn
    else:
        wn = _NoWordNet()
    per = []
    for h, r in zip(batch.hypotheses, batch.references):
        per.append(float(meteor_score([tokenize(r, "nltk", lower)], tokenize(h, "nltk", lower), wordnet=wn)))
    variant = "exact+stem+synonym" if use_wn else "exact+stem"
    return MetricResult("meteor", {"meteor": _mean(per)}, {"meteor": per},
                        {"implementation": "nltk.meteor_score", "variant": variant, "wordnet": have, "scale": "[0,1]"})


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if len(xs) else 0.0
