"""LLM-as-judge G-Score and the NLPCC 2025 Task 8 composite score.

**G-Score**: a judge model rates each response on relevance, fluency, informativeness and coherence (1–5) with
the fixed rubric :data:`RUBRIC`; ``g-score`` is the mean of the four. Backends (``resources.judge`` or metric
options):

- ``openai``: any OpenAI-compatible endpoint through the ``openai`` client (``base_url``, ``api_key`` or
  ``api_key_env``, ``model``); temperature 0; the reply is parsed robustly (:func:`parse_scores`: a JSON object, or
  "aspect: n" pairs, or the first four digits 1–5 in order); unparseable replies are counted and left out.
- ``local`` (default, offline): a local causal LM (default: the default backbone). It does not generate: for each
  aspect the rubric prompt ends with "<Aspect> (1-5):" and the score is the probability-weighted mean of the next
  token over "1".."5" (a small model cannot be trusted to follow a JSON format). Slow on CPU and a weak judge:
  use ``max_examples`` for a seeded subset and read the number as a smoke test, not as the papers' G-Score.

**NLPCC 2025 composite** = 0.2·METEOR + 0.2·BLEU-4 + 0.2·ROUGE-L + 0.1·Vector Extrema + 0.1·Dist-2 + 0.1·Dist-3 +
0.1·G-Score, every component on [0, 1]: BLEU-4 = sacrebleu corpus BLEU / 100, Dist-n = corpus Dist-n (NLTK tokens) /
100, G-Score / 5 (option ``gscore_norm``: ``divide5`` (default) or ``minmax`` = (g − 1) / 4). The task's official
script is not public: these choices are ours.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from typing import Any, Sequence

from empathkit.errors import ConfigError, ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import as_resources, batched
from empathkit.metrics.semantic import nanmean, sample_indices, scatter

log = logging.getLogger(__name__)

ASPECTS = ("relevance", "fluency", "informativeness", "coherence")

RUBRIC = """You are an impartial judge of empathetic dialogue responses.
Rate the RESPONSE to the DIALOGUE on four aspects, each an integer from 1 (very poor) to 5 (excellent):
- relevance: does it address what the speaker said and felt?
- fluency: is it grammatical and natural English?
- informativeness: does it add meaningful, specific content (not a generic reply)?
- coherence: is it consistent with the dialogue and internally logical?

DIALOGUE:
{context}

RESPONSE:
{response}
"""
JSON_INSTRUCTION = ('Answer with only a JSON object, e.g. {"relevance": 4, "fluency": 5, "informativeness": 3, '
                    '"coherence": 4}.')


def parse_scores(text: str) -> dict[str, float] | None:
    """Robustly read the four 1–5 scores from a judge's reply; None if it cannot."""
    if not text:
        return None
    m = re.search(r"\{.*?\}", text, flags=re.S)
    if m:
        try:
            obj = json.loads(m.group(0))
            out = {a: float(obj[a]) for a in ASPECTS if a in obj}
            if len(out) == len(ASPECTS) and all(1 <= v <= 5 for v in out.values()):
                return out
        except (json.JSONDecodeError, TypeError, ValueError):
            pass
    out = {}
    for a in ASPECTS:
        mm = re.search(rf"{a}\W{{0,5}}([1-5](?:\.\d+)?)", text, flags=re.I)
        if mm:
            out[a] = float(mm.group(1))
    if len(out) == len(ASPECTS):
        return out
    digits = re.findall(r"(?<![\d.])([1-5])(?![\d.])", text)
    if len(digits) >= len(ASPECTS):
        return {a: float(d) for a, d in zip(ASPECTS, digits)}
    return None


def _context_text(ctx: Sequence[str]) -> str:
    return "\n".join(f"{'Speaker' if (len(ctx) - i) % 2 == 1 else 'Listener'}: {t}" for i, t in enumerate(ctx)) or "(none)"


def _judge_openai(prompts: list[str], cfg: dict[str, Any]) -> list[dict[str, float] | None]:
    try:
        from openai import OpenAI
    except ImportError:
        raise ResourceMissing("the openai client is not installed (pip install openai)") from None
    key = cfg.get("api_key") or os.environ.get(cfg.get("api_key_env", "OPENAI_API_KEY"))
    if not key:
        raise ResourceMissing("no API key for the judge endpoint (judge.api_key or $" +
                              cfg.get("api_key_env", "OPENAI_API_KEY") + ")")
    if not cfg.get("model"):
        raise ConfigError("judge.model is required for the openai backend")
    client = OpenAI(base_url=cfg.get("base_url"), api_key=key, timeout=cfg.get("timeout", 60),
                    max_retries=cfg.get("max_retries", 2))
    out = []
    for p in prompts:
        try:
            r = client.chat.completions.create(model=cfg["model"], temperature=cfg.get("temperature", 0.0),
                                               max_tokens=cfg.get("max_tokens", 64),
                                               messages=[{"role": "user", "content": p + "\n" + JSON_INSTRUCTION}])
            out.append(parse_scores(r.choices[0].message.content or ""))
        except Exception as e:  # network / API errors: count as unparsed, keep going
            log.warning("judge request failed: %s", e)
            out.append(None)
    return out


def local_judge_texts(prompt: str, tok) -> tuple[str, dict[str, str]]:
    """The shared prefix (rubric + dialogue + response as a chat turn) and the per-aspect suffix "<Aspect> (1-5): "."""
    msg = [{"role": "user", "content": prompt + "\nRate each aspect with one digit from 1 to 5."}]
    try:
        head = tok.apply_chat_template(msg, tokenize=False, add_generation_prompt=True)
    except Exception:  # tokenizer without a chat template
        head = msg[0]["content"] + "\n"
    return head, {a: f"{a.capitalize()} (1-5): " for a in ASPECTS}


def shared_prefix(texts: Sequence[str]) -> str:
    """The longest common prefix of ``texts``, cut back to its last newline (a safe token boundary)."""
    if not texts:
        return ""
    common = os.path.commonprefix(list(texts))
    return common[: common.rfind("\n") + 1]


def _judge_local(prompts: list[str], model, tok, batch_size: int = 16, progress: bool = False) -> list[dict[str, float]]:
    """Expected score over the next-token distribution on '1'..'5' after "<Aspect> (1-5): " (no generation).

    Written here because no library scores a rubric this way with a shared cache. Three levels of reuse:
    the rubric text shared by every prompt runs once for the whole corpus (its KV cache is repeated over each
    batch); each example's dialogue + response runs once; each aspect adds only its few suffix tokens, after which
    the cache is cropped back (no copies). Examples are sorted by length; padding sits between the shared rubric
    and the example (masked, with explicit position ids), so every query still sees the rubric.
    """
    import copy

    import torch

    digit_ids = [tok.encode(str(d), add_special_tokens=False)[-1] for d in range(1, 6)]
    weights = torch.arange(1, 6, dtype=torch.float)
    heads = [local_judge_texts(p, tok)[0] for p in prompts]
    suffixes = {a: tok(s, add_special_tokens=False)["input_ids"] for a, s in local_judge_texts("", tok)[1].items()}
    pre = shared_prefix(heads) if len(heads) > 1 else ""
    pre_ids = tok(pre, add_special_tokens=False)["input_ids"] if pre else []
    rest = [tok(h[len(pre):], add_special_tokens=False)["input_ids"] for h in heads]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: list[dict[str, float]] = [dict() for _ in prompts]
    with torch.inference_mode():
        base = None
        if pre_ids:
            base = model(input_ids=torch.tensor([pre_ids]), use_cache=True, logits_to_keep=1).past_key_values
        order = sorted(range(len(prompts)), key=lambda i: len(rest[i]))
        chunks = list(batched(order, batch_size))
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="g-score (local judge)", unit="batch")
        P = len(pre_ids)
        for idx in chunks:
            B, L = len(idx), max(len(rest[i]) for i in idx)
            ids = torch.full((B, L), pad, dtype=torch.long)
            att = torch.zeros((B, P + L), dtype=torch.long)
            att[:, :P] = 1
            for r, i in enumerate(idx):
                ids[r, L - len(rest[i]):] = torch.tensor(rest[i])
                att[r, P + L - len(rest[i]):] = 1
            cache = None
            if base is not None:
                cache = copy.deepcopy(base)
                cache.batch_repeat_interleave(B)
            pos = (att.cumsum(-1) - 1).clamp(min=0)
            cache = model(input_ids=ids, attention_mask=att, position_ids=pos[:, P:], past_key_values=cache,
                          use_cache=True, logits_to_keep=1).past_key_values
            for a, sid in suffixes.items():
                full = torch.cat([att, torch.ones((B, len(sid)), dtype=torch.long)], 1)
                spos = (full.cumsum(-1) - 1)[:, -len(sid):]
                logits = model(input_ids=torch.tensor([sid] * B), attention_mask=full, position_ids=spos,
                               past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
                cache.crop(-len(sid))  # drop the suffix again (transformers 5: negative = tokens to remove)
                p = torch.softmax(logits[:, digit_ids].float(), -1)
                for i, v in zip(idx, (p * weights).sum(-1).tolist()):
                    out[i][a] = float(v)
    return out


# float32 cost per example of the default 135M judge on 2 idle cores: 0.20-0.36 s on the CPUs measured with
# benchmarks/evaluation.py (docs/metrics/README.md, Cost); the estimate uses the slowest.
FLOAT32_CPU_SECONDS_PER_EXAMPLE = 0.36
SLOW_JUDGE_WARN_SECONDS = 400  # above the recommended 1,000-example subset (360 s)


def _warn_slow_local_judge(n: int, dtype: str, device: str) -> float:
    """Warn (and return the estimate) when the local judge will run long in float32 on a CPU: where bfloat16 is not
    native this is the slowest part of the suite, and the user can pick a seeded subset or a remote judge."""
    est = n * FLOAT32_CPU_SECONDS_PER_EXAMPLE
    if device == "cpu" and dtype.endswith("float32") and est > SLOW_JUDGE_WARN_SECONDS:
        log.warning("local G-Score judge on %d examples in float32 on a CPU: about %.0f min on 2 cores (bfloat16 is "
                    "not native here). For a seeded subset use --opt g-score.max_examples=1000; for a remote judge "
                    "set judge.backend=openai.", n, est / 60)
    return est


@register_metric("g-score", family="judge",
                 description="LLM-as-judge G-Score: relevance, fluency, informativeness, coherence (1-5) and their mean")
def g_score(batch: Batch, resources=None, backend: str | None = None, model: str | None = None,
            base_url: str | None = None, max_examples: int | None = None, seed: int = 0, batch_size: int = 16) -> MetricResult:
    res = as_resources(resources)
    cfg = {**res.config.judge}
    cfg.update({k: v for k, v in (("backend", backend), ("model", model), ("base_url", base_url)) if v})
    be = cfg.get("backend", "openai" if cfg.get("base_url") else "local")
    n = len(batch.hypotheses)
    idx = sample_indices(n, max_examples, seed)
    prompts = [RUBRIC.format(context=_context_text(batch.contexts[i]), response=batch.hypotheses[i]) for i in idx]
    if be == "openai":
        parsed = _judge_openai(prompts, cfg)
        judge_name = f"{cfg.get('model')} @ {cfg.get('base_url') or 'api.openai.com'}"
    elif be == "local":
        name = cfg.get("model") or res.config.lm
        if name == res.config.lm:
            lm, tok = res.lm()
        else:
            from empathkit.metrics.resources import _causal_lm

            lm, tok = _causal_lm(name, res.lm_dtype())
        weight = next(lm.parameters())
        _warn_slow_local_judge(len(prompts), str(weight.dtype), weight.device.type)
        parsed = _judge_local(prompts, lm, tok, batch_size, progress=len(prompts) > 64)
        judge_name = f"local {name}, {res.lm_dtype()} (expected score over 1-5)"
    else:
        raise ConfigError(f"judge backend must be openai | local, got {be!r}")
    failed = sum(1 for p in parsed if p is None)
    per: dict[str, list[float]] = {}
    for a in ASPECTS:
        per[f"g-{a}"] = scatter(n, idx, [p[a] if p else math.nan for p in parsed])
    per["g-score"] = scatter(n, idx, [sum(p.values()) / len(p) if p else math.nan for p in parsed])
    agg = {k: nanmean(v) for k, v in per.items()}
    return MetricResult("g-score", agg, per, {"backend": be, "judge": judge_name, "scored": len(idx),
                                              "unparsed": failed, "scale": "1-5", "aspects": list(ASPECTS)})


# ------------------------------------------------------------------------------------------------ NLPCC composite
NLPCC_WEIGHTS = {"meteor": 0.2, "bleu-4": 0.2, "rouge-l": 0.2, "vector-extrema": 0.1, "dist-2": 0.1, "dist-3": 0.1,
                 "g-score": 0.1}
# component key → (metric that produces it, options, divisor to bring it onto [0, 1])
_COMPONENTS = {"meteor": ("meteor", {}, 1.0), "bleu-4": ("bleu", {"orders": [4]}, 100.0),
               "rouge-l": ("rouge", {"types": ["rougeL"]}, 1.0), "vector-extrema": ("vector-extrema", {}, 1.0),
               "dist-2": ("dist", {"ns": [2, 3]}, 100.0), "dist-3": ("dist", {"ns": [2, 3]}, 100.0)}


@register_metric("nlpcc2025", family="judge", description="NLPCC 2025 Task 8 composite: 0.2 METEOR + 0.2 BLEU-4 + 0.2 ROUGE-L + 0.1 VE + 0.1 Dist-2 + 0.1 Dist-3 + 0.1 G-Score")
def nlpcc2025(batch: Batch, resources=None, gscore_norm: str = "divide5") -> MetricResult:
    """Reuses components already computed in the same evaluation (``batch.extra['_aggregates']``), computes the
    missing ones (except the G-Score, which needs a judge: without it ``nlpcc2025`` is NaN and
    ``nlpcc2025-without-g`` holds the other 90 % of the weight)."""
    from empathkit.metrics import METRICS

    res = as_resources(resources)
    have = dict(batch.extra.get("_aggregates", {}))
    comps: dict[str, float] = {}
    for key, (metric, opts, div) in _COMPONENTS.items():
        if key not in have:
            have.update(METRICS.get(metric).fn(batch, res, **opts).aggregate)
        comps[key] = have[key] / div
    g = have.get("g-score")
    if g is not None and not math.isnan(g):
        comps["g-score"] = g / 5.0 if gscore_norm == "divide5" else (g - 1.0) / 4.0
    partial = sum(NLPCC_WEIGHTS[k] * v for k, v in comps.items() if k != "g-score")
    total = partial + NLPCC_WEIGHTS["g-score"] * comps["g-score"] if "g-score" in comps else math.nan
    return MetricResult("nlpcc2025", {"nlpcc2025": total, "nlpcc2025-without-g": partial}, None,
                        {"components": comps, "weights": NLPCC_WEIGHTS, "gscore_norm": gscore_norm,
                         "scale": "[0,1]"})
