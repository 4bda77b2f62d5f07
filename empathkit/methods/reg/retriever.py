"""REG stage 2 (Sec. 3.2.3, Eq. 3–5): the retriever distilled from G1's token-level utilities.

Query-side training as Atlas / FiD do it without re-indexing: a trainable copy of the index's sentence encoder
(:class:`QueryEncoder`) embeds the *queries*; the exemplar embeddings stay the frozen vectors of the FAISS index
(``ExemplarIndex.vectors()``), so nothing is re-embedded or re-indexed. Periodic re-indexing (re-embedding the
corpus with the trained encoder) is not built.

:func:`train_retriever`, into ``out_dir``::

    decodes/g1-decodes-<key>.jsonl   G1 decodes of (query, candidate) pairs (reg/decodes.py DecodeCache), resumable
    retriever_log.jsonl               one row per optimiser step: loss, mean entropy of P, augmented share
    query_encoder/                    the trained query encoder (sentence-transformers save, safetensors)
    retriever_config.json             config, seed, counts, seconds (decoding vs training); written last

1. a fixed pool of ``pool`` (M) candidates per training query from the index (mode ``reg`` when the index has
   attributes, else ``semantic``; the query's own conversation excluded), retrieved with the initial query encoder;
2. each epoch, :class:`~empathkit.methods.reg.distill.CandidateAugmenter` (seeded) replaces each candidate with
   probability ``distill.k`` by a random corpus exemplar (never from the query's conversation; Eq. 5);
3. the (query, candidate) pairs not yet cached are decoded by G1 (``pair_decoder``), batched, under a progress bar;
4. per batch of queries: ``P = softmax(F / τ)`` from the cache (Eq. 3), ``S_q = q · e`` (query embedding against
   the frozen candidate embeddings), ``L_R = RetrieverDistillLoss(distill.loss, τ, τ_r)`` (Eq. 4); AdamW on the
   query encoder only.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from pydantic import BaseModel, Field

from empathkit.methods.reg.decodes import DecodeCache, pair_decoder
from empathkit.methods.reg.distill import CandidateAugmenter, DistillConfig, distillation_target, similarity_scores
from empathkit.methods.reg.index import ExemplarIndex, query_text
from empathkit.types import Example

ENCODER_DIR, CONFIG_FILE, LOG_FILE, DECODES_DIR = "query_encoder", "retriever_config.json", "retriever_log.jsonl", "decodes"


# ====================================================================================================== encoder
class QueryEncoder(torch.nn.Module):
    """A trainable sentence-transformers encoder for queries (the model's own pooling — mean pooling for MiniLM /
    Contriever — then L2-normalised, as the index's embeddings).

    ``encode(texts)``: ``texts`` are strings or contexts (lists of turns, joined as :func:`index.query_text`).
    In training mode (``.train()``) it returns a differentiable ``(n, d)`` tensor; in eval mode it runs without
    gradients, and with ``convert_to_numpy=True`` returns float32 numpy — the call ``index.embed`` makes, so a
    ``QueryEncoder`` can stand as an :class:`ExemplarIndex`'s ``encoder`` / ``query_encoder``."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.eval()

    @classmethod
    def from_encoder(cls, encoder) -> "QueryEncoder":
        """A trainable copy: of a ``QueryEncoder`` or ``SentenceTransformer`` object, or a name / folder
        (``minilm-l6`` = the embedded MiniLM) loaded fresh (never the process-wide cached index encoder)."""
        if isinstance(encoder, QueryEncoder):
            return cls(copy.deepcopy(encoder.model))
        if isinstance(encoder, (str, Path)):
            from sentence_transformers import SentenceTransformer

            from empathkit.models.backbones import encoder_path

            return cls(SentenceTransformer(encoder_path(str(encoder)), device="cpu", trust_remote_code=False))
        return cls(copy.deepcopy(encoder))

    def forward(self, texts: Sequence[Any]) -> torch.Tensor:
        strs = [t if isinstance(t, str) else query_text(t) for t in texts]
        if not strs:
            return torch.zeros((0, self.dim))
        prep = getattr(self.model, "preprocess", None) or self.model.tokenize  # tokenize: sentence-transformers < 6
        feats = prep(strs)
        out = self.model(feats)["sentence_embedding"]
        return torch.nn.functional.normalize(out, p=2, dim=-1)

    @property
    def dim(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def encode(self, texts: Sequence[Any], batch_size: int = 64, convert_to_numpy: bool = False,
               normalize_embeddings: bool = True, show_progress_bar: bool = False, **_: Any):
        """``(n, d)`` normalised embeddings (see the class docstring; ``normalize_embeddings`` is always on)."""
        if self.training:
            out = torch.cat([self(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]) \
                if len(texts) else self([])
            return out.detach().numpy().astype(np.float32) if convert_to_numpy else out
        with torch.no_grad():
            parts = [self(list(texts[i:i + batch_size])) for i in range(0, len(texts), batch_size)]
        out = torch.cat(parts) if parts else self([])
        return out.numpy().astype(np.float32) if convert_to_numpy else out

    def save(self, folder: str | Path) -> Path:
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        self.model.save(str(d), safe_serialization=True)
        return d

    @classmethod
    def load(cls, folder: str | Path) -> "QueryEncoder":
        from sentence_transformers import SentenceTransformer

        return cls(SentenceTransformer(str(folder), device="cpu", trust_remote_code=False))


# ======================================================================================================= config
class RetrieverTrainConfig(BaseModel):
    """Stage-2 options (``train.retriever`` of a REG run). ``distill``: τ, τ_r, loss, k, utility (provisional)."""

    model_config = {"extra": "forbid"}

    pool: int = Field(16, ge=1, description="M: candidates per query from the current retriever")
    queries: int | None = Field(None, ge=1, description="use at most this many training queries (first n)")
    epochs: int = Field(1, ge=1)
    lr: float = Field(2e-5, gt=0, description="AdamW learning rate of the query encoder")
    batch_size: int = Field(8, ge=1, description="queries per optimiser step")
    weight_decay: float = Field(0.0, ge=0)
    decode_batch_size: int = Field(16, ge=1, description="(query, candidate) pairs per G1 generate call")
    max_new_tokens: int = Field(32, ge=1, description="G1 decode length (greedy)")
    seed: int = 0
    distill: DistillConfig = Field(default_factory=DistillConfig)


# ====================================================================================================== training
def _query_attributes(queries: Sequence[Example]) -> list[dict] | None:
    attrs = [dict(q.annotations.attributes) for q in queries]
    return attrs if all(attrs) else None  # else: the index's tagger computes them from the contexts


def _utilities(cache: DecodeCache, query_ids, candidate_ids, references, utility) -> torch.Tensor:
    """``F`` (B, K) of cached G1 decodes (as ``decodes.targets_from_cache``, before its softmax, so that padded
    candidates can be masked out of Eq. 3)."""
    decodes = []
    for q, row in zip(query_ids, candidate_ids, strict=True):
        texts = [cache.get(q, e) for e in row]
        if any(t is None for t in texts):
            raise KeyError(f"no cached G1 decode for query {q!r} with one of {row}: fill the cache first")
        decodes.append(texts)
    return utility.matrix(decodes, references)


def _entropy(p: torch.Tensor) -> float:
    return float((-torch.xlogy(p, p).sum(dim=-1)).mean())


def _g1_name(g1) -> str:
    src = getattr(g1, "source_dir", None)
    return str(src) if src else f"{type(g1).__module__}.{type(g1).__name__}"


def train_retriever(index: ExemplarIndex, g1, queries: Sequence[Example], cfg: RetrieverTrainConfig,
                    out_dir: Path, progress: bool = True, encoder_init=None) -> Path:
    """Distil G1's utilities into a query encoder (module docstring); returns ``out_dir``. ``encoder_init``: the
    encoder to start from (object, name or folder; default the index's ``encoder`` name). A finished run with
    the same config returns at once; the G1 decodes are cached and reused."""
    from tqdm.auto import tqdm

    from empathkit.models.generation import GenerationSettings

    cfg = cfg if isinstance(cfg, RetrieverTrainConfig) else RetrieverTrainConfig.model_validate(cfg)
    out = Path(out_dir)
    queries = list(queries)[: cfg.queries] if cfg.queries else list(queries)
    want = {"config": cfg.model_dump(mode="json"), "queries": len(queries), "corpus_size": len(index),
            "g1": _g1_name(g1)}
    done = out / CONFIG_FILE
    if (out / ENCODER_DIR).is_dir() and done.is_file():
        prev = json.loads(done.read_text(encoding="utf-8"))
        if {k: prev.get(k) for k in want} == want:
            return out
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    mode = "reg" if index.has_attributes else "semantic"
    qenc = QueryEncoder.from_encoder(encoder_init if encoder_init is not None else index.config["encoder"])

    # 1. the fixed candidate pool (current retriever = the initial query encoder)
    t0 = time.time()
    contexts = [[t.text for t in q.context] for q in queries]
    rows = index.search(contexts, k=cfg.pool, mode=mode, exclude_dialogue_ids=[q.dialogue_id for q in queries],
                        query_attributes=_query_attributes(queries) if mode == "reg" else None,
                        query_encoder=qenc)
    keep = [i for i, r in enumerate(rows) if r]
    queries, contexts = [queries[i] for i in keep], [contexts[i] for i in keep]
    pools = [[e.id for e in rows[i]] for i in keep]
    t_pool = time.time() - t0

    row_of = {e.id: j for j, e in enumerate(index.exemplars)}
    vectors = torch.from_numpy(np.ascontiguousarray(index.vectors(), dtype=np.float32))  # frozen
    by_id = {e.id: e for e in index.exemplars}
    qmap = {q.id: q for q in queries}
    settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                  batch_size=cfg.decode_batch_size)
    cache = DecodeCache.open(out / DECODES_DIR, g1=_g1_name(g1), settings=settings.model_dump(mode="json"),
                             mode=mode, pool=cfg.pool)
    decode = pair_decoder(g1, qmap, by_id, settings)
    augmenter = CandidateAugmenter(index.exemplars, cfg.distill.k, seed=cfg.seed)
    utility = cfg.distill.utility_fn()
    loss_fn = cfg.distill.retrieval_loss()
    opt = torch.optim.AdamW([p for p in qenc.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)

    t_decode = t_train = 0.0
    decoded = steps = 0
    augmented = total = 0
    step_rng = random.Random(f"reg-retriever-order-{cfg.seed}")
    log_rows: list[dict[str, Any]] = []
    (out / LOG_FILE).write_text("", encoding="utf-8")
    for epoch in range(cfg.epochs):
        # 2. augmentation, drawn once per epoch
        cands, flags = [], []
        for q, pool_ids in zip(queries, pools):
            c, f = augmenter([by_id[e] for e in pool_ids], q.dialogue_id)
            cands.append([e.id for e in c])
            flags.append(f)
        augmented += sum(map(sum, flags))
        total += sum(map(len, flags))
        # 3. the missing G1 decodes
        t0 = time.time()
        pairs = [(q.id, e) for q, row in zip(queries, cands) for e in row]
        todo = cache.missing(pairs)
        bar = tqdm(total=len(todo), desc=f"G1 decodes (epoch {epoch + 1})", unit="pair", disable=not progress)
        for b in range(0, len(todo), cfg.decode_batch_size):
            chunk = todo[b:b + cfg.decode_batch_size]
            cache.fill(chunk, decode, batch_size=cfg.decode_batch_size)
            bar.update(len(chunk))
        bar.close()
        decoded += len(todo)
        t_decode += time.time() - t0
        # 4. distillation steps
        t0 = time.time()
        qenc.train()
        order = list(range(len(queries)))
        step_rng.shuffle(order)
        nb = math.ceil(len(order) / cfg.batch_size)
        bar = tqdm(total=nb, desc=f"retriever (epoch {epoch + 1})", unit="step", disable=not progress)
        for b in range(0, len(order), cfg.batch_size):
            ids = order[b:b + cfg.batch_size]
            width = max(len(cands[i]) for i in ids)
            cid = [cands[i] + [cands[i][0]] * (width - len(cands[i])) for i in ids]
            mask = torch.tensor([[j < len(cands[i]) for j in range(width)] for i in ids])
            F = _utilities(cache, [queries[i].id for i in ids], cid, [queries[i].target for i in ids], utility)
            target = distillation_target(F, cfg.distill.tau, mask)  # Eq. 3 (padding: probability 0)
            emb = vectors[torch.tensor([[row_of[e] for e in row] for row in cid])]
            q = qenc.encode([contexts[i] for i in ids], batch_size=len(ids))
            scores = similarity_scores(q, emb)
            loss = loss_fn(F, scores, mask)  # Eq. 3 + Eq. 4
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            row = {"step": steps, "epoch": epoch + 1, "loss": float(loss.detach()), "entropy": _entropy(target),
                   "augmented": sum(sum(flags[i]) for i in ids) / max(1, sum(len(flags[i]) for i in ids)),
                   "queries": len(ids)}
            log_rows.append(row)
            with (out / LOG_FILE).open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            bar.update(1)
        bar.close()
        qenc.eval()
        t_train += time.time() - t0

    qenc.save(out / ENCODER_DIR)
    summary = dict(want, seed=cfg.seed, mode=mode, steps=steps, epochs=cfg.epochs, queries_used=len(queries),
                   pool=cfg.pool, decoded=decoded, cached=len(cache), augmented=augmented, candidates=total,
                   augmented_share=augmented / max(1, total), cache_file=str(cache.path.name),
                   seconds={"pool": round(t_pool, 2), "decoding": round(t_decode, 2), "training": round(t_train, 2)},
                   final_loss=log_rows[-1]["loss"] if log_rows else None)
    done.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out
