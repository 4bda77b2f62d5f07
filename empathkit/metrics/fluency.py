"""Fluency: perplexity of a causal language model on the reference responses (token level).

ReflectDiffu / REG report the *generator's* perplexity on the ground-truth responses. An evaluation suite that scores
any system's outputs does not have that generator, so ``perplexity`` uses a configured causal LM (default: the
default backbone, SmolLM2-135M-Instruct; give a trained run's model via ``resources.lm`` to score a generator):

- ``target``: ``references`` (default, the papers' definition) or ``hypotheses`` (fluency of the outputs as judged
  by the LM);
- ``condition``: ``context`` (the dialogue context precedes the target, one turn per line; only target tokens are
  scored) or ``none``;
- PPL = exp(total NLL / total target tokens) over the corpus, in the LM's own (sub-word) tokens; per-example PPL
  is kept too. Reference scores are cached per process, so several systems share them. If the predictions carry the generator's own scores (``extra.ref_nll`` + ``extra.ref_tokens``,
  written by a method), those are used instead of re-scoring.
"""

from __future__ import annotations

import math

from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import as_resources
from empathkit.metrics.semantic import causal_loglik, sample_indices, scatter


_CACHE: dict[tuple, tuple[float, int]] = {}


@register_metric("perplexity", family="fluency", higher_is_better=False,
                 description="token-level perplexity of a causal LM (default backbone) on the references")
def perplexity(batch: Batch, resources=None, target: str = "references", condition: str = "none",
               max_context_turns: int = 2, batch_size: int = 32, max_examples: int | None = None,
               seed: int = 0) -> MetricResult:
    n = len(batch.hypotheses)
    given_nll, given_tok = batch.extra.get("ref_nll"), batch.extra.get("ref_tokens")
    if target == "references" and given_nll and given_tok and all(x is not None for x in given_nll + given_tok):
        nll, toks = [float(x) for x in given_nll], [int(x) for x in given_tok]
        per = [math.exp(a / b) if b else math.nan for a, b in zip(nll, toks)]
        return MetricResult("perplexity", {"ppl": math.exp(sum(nll) / max(1, sum(toks)))}, {"ppl": per},
                            {"source": "generator scores from the predictions file", "unit": "LM tokens"})
    if target not in ("references", "hypotheses"):
        raise ValueError(f"target must be references | hypotheses, got {target!r}")
    if condition not in ("none", "context"):
        raise ValueError(f"condition must be none | context, got {condition!r}")
    res = as_resources(resources)
    model, tok = res.lm()
    idx = sample_indices(n, max_examples, seed)
    texts = batch.references if target == "references" else batch.hypotheses
    tg = [texts[i] for i in idx]
    if condition == "context":
        pre = ["\n".join(list(batch.contexts[i])[-max_context_turns:]) + "\n" for i in idx]
    else:
        pre = [""] * len(idx)
    # references are the same for every system: cache their scores per (LM, prefix, text) within the process
    key_lm = (res.config.lm, res.lm_dtype()) if res._lm is None else id(model)
    keys = [(key_lm, p, t) for p, t in zip(pre, tg)]
    todo = [i for i, k in enumerate(keys) if k not in _CACHE] if target == "references" else list(range(len(keys)))
    if todo:
        s_, c_ = causal_loglik(model, tok, [pre[i] for i in todo], [tg[i] for i in todo], batch_size, desc="perplexity")
        fresh = {keys[i]: (a, b) for i, a, b in zip(todo, s_, c_)}
        if target == "references":
            _CACHE.update(fresh)
    else:
        fresh = {}
    got = [fresh.get(k) or _CACHE[k] for k in keys]
    sums, counts = [g[0] for g in got], [g[1] for g in got]
    per = scatter(n, idx, [math.exp(-s / c) if c else math.nan for s, c in zip(sums, counts)])
    total = sum(counts)
    ppl = math.exp(-sum(sums) / total) if total else math.nan
    return MetricResult("perplexity", {"ppl": ppl}, {"ppl": per},
                        {"model": res.config.lm, "dtype": res.lm_dtype(), "target": target, "condition": condition, "unit": "LM tokens",
                         "level": "corpus (token-weighted)", "scored": len(idx)})
