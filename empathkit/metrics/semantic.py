"""Semantic-similarity metrics: BERTScore, BARTScore (seq2seq or causal-LM variant), Vector Extrema.

Defaults are local and offline: the embedded MiniLM encoder (``minilm-l6``) for BERTScore and Vector Extrema, the
default backbone (SmolLM2-135M-Instruct) for the causal BARTScore variant. Any model id works when online.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import tempfile
from pathlib import Path
from typing import Sequence

from empathkit.errors import ResourceMissing
from empathkit.metrics.base import Batch, MetricResult, register_metric
from empathkit.metrics.resources import as_resources, batched

log = logging.getLogger(__name__)

# bert-score needs the layer for models it does not know. all-MiniLM-L6-v2 has 6 layers; we take layer 5, by analogy
# with bert-score's own choice for the 6-layer distilbert-base-uncased (5). Override with ``num_layers``.
LOCAL_LAYERS = {"minilm-l6": 5}


def sample_indices(n: int, max_examples: int | None, seed: int = 0) -> list[int]:
    """All indices, or a seeded subset of ``max_examples`` (sorted) for slow model-based metrics."""
    if max_examples is None or max_examples >= n:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), max_examples))


def scatter(n: int, idx: Sequence[int], values: Sequence[float]) -> list[float]:
    out = [math.nan] * n
    for i, v in zip(idx, values):
        out[i] = float(v)
    return out


def nanmean(xs: Sequence[float]) -> float:
    v = [x for x in xs if not math.isnan(x)]
    return sum(v) / len(v) if v else math.nan


# ------------------------------------------------------------------------------------------------ BERTScore
def _bert_score_safe(path: str) -> str:
    """bert-score picks the model class from substrings of ``model_type`` ("t5" → ``T5EncoderModel``), so a local
    BERT folder whose *path* contains "t5" (e.g. /work/ci-test5/…) loads as a random T5. Such a folder is reached
    through a symlink without that substring instead."""
    p = Path(path)
    if "t5" not in path.lower() or not p.is_dir():
        return path
    try:
        model_type = json.loads((p / "config.json").read_text()).get("model_type", "")
    except (OSError, ValueError):
        return path
    if "t5" in model_type:
        return path
    link = Path(tempfile.gettempdir()) / "empathkit-bertscore" / hashlib.sha1(path.encode()).hexdigest()[:12]
    if "t5" in str(link).lower():
        raise ResourceMissing(f"bert-score would load {path} as a T5 model (its path contains 't5'); move it")
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(p.resolve(), target_is_directory=True)
    return str(link)


@register_metric("bertscore", family="semantic",
                 description="BERTScore P/R/F1 (bert-score); default encoder the embedded MiniLM (layer 5), baseline rescaling when available")
def bertscore(batch: Batch, resources=None, model: str | None = None, num_layers: int | None = None,
              rescale_with_baseline: bool = False, baseline_path: str | None = None, idf: bool = False,
              lang: str = "en", batch_size: int = 64) -> MetricResult:
    """``model``: a name (``minilm-l6``), folder or hub id (default: ``resources.encoder``). ``rescale_with_baseline``
    needs a baseline for that model: bert-score ships them for its known hub models (``lang='en'``); for a local
    folder pass ``baseline_path``; otherwise scores are reported unrescaled and the info says so."""
    import bert_score
    from bert_score.utils import model2layers

    from empathkit.models.backbones import encoder_path

    res = as_resources(resources)
    name = model or res.config.encoder
    path = encoder_path(name)
    layers = num_layers or LOCAL_LAYERS.get(name) or model2layers.get(path)
    if layers is None:
        raise ResourceMissing(f"bert-score does not know the layer to use for {name!r}: pass num_layers")
    rescale = bool(rescale_with_baseline)
    note = ""
    if rescale and baseline_path is None and path not in model2layers:
        rescale, note = False, f"no rescaling baseline for {name!r} (pass baseline_path); reported unrescaled"
        log.warning(note)
    P, R, F = bert_score.score(list(batch.hypotheses), list(batch.references), model_type=_bert_score_safe(path),
                               num_layers=layers,
                               idf=idf, batch_size=batch_size, lang=lang, rescale_with_baseline=rescale,
                               baseline_path=baseline_path, device=res.config.device, verbose=False)
    per = {"bertscore-p": P.tolist(), "bertscore-r": R.tolist(), "bertscore-f1": F.tolist()}
    agg = {k: float(sum(v) / len(v)) for k, v in per.items()}
    info = {"implementation": "bert-score", "encoder": name, "model": path, "num_layers": layers, "idf": idf,
            "rescaled": rescale, "scale": "[0,1] (cosine-based)"}
    if note:
        info["warning"] = note
    return MetricResult("bertscore", agg, per, info)


# ------------------------------------------------------------------------------------------------ BARTScore
def _seq2seq_loglik(model, tok, srcs: Sequence[str], tgts: Sequence[str], batch_size: int) -> list[float]:
    """Mean token log-likelihood of each target given its source (Yuan et al. 2021, BARTScorer.score)."""
    import torch

    out: list[float] = []
    for idx in batched(list(range(len(srcs))), batch_size):
        enc = tok([srcs[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=1024)
        dec = tok([tgts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=1024)
        labels = dec["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).logits
        lp = torch.log_softmax(logits.float(), -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        mask = dec["attention_mask"].float()
        out.extend(((lp * mask).sum(1) / mask.sum(1).clamp(min=1)).tolist())
    return out


CAUSAL_TEMPLATE = "Text: {src}\nThe same thing said in other words: "


def causal_loglik(model, tok, prefixes: Sequence[str], targets: Sequence[str], batch_size: int = 16,
                  desc: str | None = None) -> tuple[list[float], list[int]]:
    """Sum of target-token log-probabilities given a prefix, and the number of target tokens, per example.

    Prefix and target are tokenised separately and concatenated (so the target's tokens are exactly those of the
    target text); examples are sorted by length and left-padded per batch with explicit position ids, so the LM head
    only runs on the last (longest target + 1) positions (``logits_to_keep``).
    """
    import torch

    bos = [tok.bos_token_id] if tok.bos_token_id is not None else []
    items = []
    for i, (p, t) in enumerate(zip(prefixes, targets)):
        pi = bos + tok(p, add_special_tokens=False)["input_ids"] if p else bos
        ti = tok(t, add_special_tokens=False)["input_ids"]
        if not pi:  # no BOS and no prefix: the first target token cannot be scored → drop it
            pi, ti = ti[:1], ti[1:]
        items.append((i, pi, ti))
    order = sorted(items, key=lambda x: len(x[1]) + len(x[2]))
    sums, counts = [0.0] * len(items), [0] * len(items)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    it = list(batched(order, batch_size))
    if desc:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=desc, unit="batch")
    for chunk in it:
        L = max(len(p) + len(t) for _, p, t in chunk)
        T = max(len(t) for _, _, t in chunk)
        ids = torch.full((len(chunk), L), pad, dtype=torch.long)
        att = torch.zeros((len(chunk), L), dtype=torch.long)
        for r, (_, p, t) in enumerate(chunk):
            seq = p + t
            ids[r, L - len(seq):] = torch.tensor(seq)
            att[r, L - len(seq):] = 1
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        if T == 0:
            continue
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=T + 1).logits
        logits = logits[:, -(T + 1):-1]  # predictions for the last T positions
        tgt = ids[:, L - T:]
        lp = torch.log_softmax(logits.float(), -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
        m = torch.zeros_like(lp, dtype=torch.bool)
        for r, (_, _, t) in enumerate(chunk):
            if t:
                m[r, T - len(t):] = True
        s = (lp * m).sum(1).tolist()
        c = m.sum(1).tolist()
        for r, (i, _, _) in enumerate(chunk):
            sums[i], counts[i] = s[r], int(c[r])
    return sums, counts


@register_metric("bartscore", family="semantic",
                 description="BARTScore: mean token log-likelihood between hypothesis and reference (seq2seq BART if given, else a causal-LM variant on the default backbone)")
def bartscore(batch: Batch, resources=None, model: str | None = None, direction: str = "ref->hyp",
              batch_size: int = 32, max_examples: int | None = None, seed: int = 0) -> MetricResult:
    """``direction``: ``ref->hyp`` (precision, log p(hyp | ref)), ``hyp->ref`` (recall), ``f`` (their mean, the
    BARTScore F score). ``model``: a BART checkpoint (folder / hub id) → original seq2seq BARTScore; otherwise
    (default) the causal variant on ``resources.lm``: log p(target | "Text: <source>\\nThe same thing said in other
    words: ") per target token. ``max_examples`` scores a seeded subset (others are NaN)."""
    res = as_resources(resources)
    bart = model or res.config.bart_model
    n = len(batch.hypotheses)
    idx = sample_indices(n, max_examples, seed)
    H = [batch.hypotheses[i] for i in idx]
    R = [batch.references[i] for i in idx]
    pairs = {"ref->hyp": [(R, H)], "hyp->ref": [(H, R)], "f": [(R, H), (H, R)]}.get(direction)
    if pairs is None:
        raise ValueError(f"direction must be ref->hyp | hyp->ref | f, got {direction!r}")
    if bart:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(bart)
            mdl = AutoModelForSeq2SeqLM.from_pretrained(bart).eval()
        except OSError as e:
            raise ResourceMissing(f"could not load BART model {bart!r}: {str(e).splitlines()[0]}") from None
        scores = [_seq2seq_loglik(mdl, tok, s, t, batch_size) for s, t in pairs]
        variant, mname = "seq2seq", bart
    else:
        mdl, tok = res.lm()
        scores = []
        for s, t in pairs:
            sums, counts = causal_loglik(mdl, tok, [CAUSAL_TEMPLATE.format(src=x) for x in s], t, batch_size,
                                         desc=f"bartscore {direction}")
            scores.append([a / c if c else math.nan for a, c in zip(sums, counts)])
        variant, mname = "causal-lm", f"{res.config.lm} ({res.lm_dtype()})"
    vals = [sum(v) / len(v) for v in zip(*scores)]
    per = scatter(n, idx, vals)
    return MetricResult("bartscore", {"bartscore": nanmean(per)}, {"bartscore": per},
                        {"variant": variant, "model": mname, "direction": direction, "scored": len(idx),
                         "scale": "mean log-probability per token (≤ 0, higher is better)",
                         **({"template": CAUSAL_TEMPLATE} if variant == "causal-lm" else {})})


# ------------------------------------------------------------------------------------------------ Vector Extrema
def extrema(vectors):
    """Per dimension, the value with the largest magnitude (Forgues et al. 2014)."""
    import numpy as np

    mx, mn = vectors.max(0), vectors.min(0)
    return np.where(np.abs(mn) > np.abs(mx), mn, mx)


def _static_table(res):
    """The encoder's static (input) token-embedding table and its tokenizer — the default word vectors."""
    enc = res.encoder()
    first = enc[0]
    emb = first.auto_model.get_input_embeddings().weight.detach().cpu().numpy()
    return first.tokenizer, emb


@register_metric("vector-extrema", family="semantic",
                 description="Vector Extrema cosine (Forgues et al. 2014); default vectors = the encoder's static WordPiece embeddings")
def vector_extrema(batch: Batch, resources=None, embeddings: str | None = None) -> MetricResult:
    """Word vectors: a GloVe/word2vec text file (``embeddings`` or ``resources.embeddings``; lower-cased NLTK tokens,
    OOV skipped) — the usual choice — or by default the input-embedding table of the sentence encoder (MiniLM's
    30k WordPiece vectors, 384-d) over its own tokens: GloVe is not available here. An empty side scores 0."""
    import numpy as np

    from empathkit.metrics.resources import tokenize

    res = as_resources(resources)
    path = embeddings or res.config.embeddings
    if path:
        from empathkit.metrics.resources import _word_vectors

        vocab, mat = _word_vectors(path)

        def vecs(text):
            rows = [vocab[t] for t in tokenize(text, "nltk", lower=True) if t in vocab]
            return mat[rows] if rows else None

        source = path
    else:
        tk, mat = _static_table(res)
        special = set(tk.all_special_ids)

        def vecs(text):
            rows = [i for i in tk(text, add_special_tokens=False)["input_ids"] if i not in special]
            return mat[rows] if rows else None

        source = f"{res.config.encoder} static token embeddings"
    per = []
    for h, r in zip(batch.hypotheses, batch.references):
        vh, vr = vecs(h), vecs(r)
        if vh is None or vr is None:
            per.append(0.0)
            continue
        a, b = extrema(vh), extrema(vr)
        den = float(np.linalg.norm(a) * np.linalg.norm(b))
        per.append(float(a @ b) / den if den else 0.0)
    return MetricResult("vector-extrema", {"vector-extrema": sum(per) / len(per) if per else 0.0},
                        {"vector-extrema": per}, {"embeddings": source, "scale": "cosine [-1,1]"})
