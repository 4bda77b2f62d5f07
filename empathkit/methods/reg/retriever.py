"""REG stage 2 (Sec. 3.2.3, Eq. 3–5): the retriever distilled from G1's token-level utilities.

Query-side training as Atlas / FiD do it without re-indexing (the default): a trainable copy of the index's
sentence encoder (:class:`QueryEncoder`) embeds the *queries*; the exemplar embeddings stay the frozen vectors of
the FAISS index (``ExemplarIndex.vectors()``), so nothing is re-embedded or re-indexed.

``reindex_every: N`` (optional) adds periodic re-indexing, Atlas' "index refresh" with a shared encoder: every N
optimiser steps the corpus is re-embedded by the current query encoder (``ExemplarIndex.reembedded``; no gradient
flows into the exemplar side, as in the refresh between steps), the candidate pools are retrieved again from the
refreshed index, a new Eq. 5 draw is made and the new pairs are decoded; training continues against the refreshed
vectors. After the last step the corpus is embedded once more by the final encoder and saved in
``retriever/index/``: what the run retrieves from afterwards (stage 3, ``load``, ``empathkit retrieve --run``), so
queries and exemplars come from one encoder.

:func:`train_retriever`, into ``out_dir``::

    decodes/g1-decodes-<key>.jsonl   G1 decodes of (query, candidate) pairs (reg/decodes.py DecodeCache), resumable
    retriever_log.jsonl               one row per optimiser step: loss, mean entropy of P, augmented share
    query_encoder/                    the trained query encoder (sentence-transformers save, safetensors)
    index/                            with reindex_every: the last refreshed exemplar index
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
from typing import Any, Literal, Sequence

import numpy as np
import torch
from pydantic import BaseModel, Field

from empathkit.methods.reg.decodes import DecodeCache, pair_decoder
from empathkit.methods.reg.distill import CandidateAugmenter, DistillConfig, distillation_target, similarity_scores
from empathkit.methods.reg.index import CONFIG_FILE as INDEX_CONFIG_FILE, ExemplarIndex, query_text
from empathkit.types import Example

ENCODER_DIR, CONFIG_FILE, LOG_FILE, DECODES_DIR = "query_encoder", "retriever_config.json", "retriever_log.jsonl", "decodes"
INDEX_DIR = "index"  # the refreshed index (reindex_every)


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
    target: Literal["utility", "g1-likelihood"] = Field(
        "utility", description="Eq. 3's F: utility = token metrics of G1's decode with the candidate (REG); "
                               "g1-likelihood = G1's mean log-likelihood of the gold response given the candidate "
                               "(Generator.score; the Table 2 'G1+RAG' ablation)")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    reindex_every: int | None = Field(
        None, ge=1, description="optimiser steps between index refreshes (re-embed the corpus with the current "
                                "query encoder, re-retrieve the pools); None = query-side only, no refresh")


# ====================================================================================================== training
def _query_attributes(queries: Sequence[Example]) -> list[dict] | None:
    attrs = [dict(q.annotations.attributes) for q in queries]
    return attrs if all(attrs) else None  # else: the index's tagger computes them from the contexts


def _entropy(p: torch.Tensor) -> float:
    return float((-torch.xlogy(p, p).sum(dim=-1)).mean())


def _g1_name(g1) -> str:
    src = getattr(g1, "source_dir", None)
    return str(src) if src else f"{type(g1).__module__}.{type(g1).__name__}"


def candidate_pools(index: ExemplarIndex, queries: Sequence[Example], qenc, pool: int, mode: str | None = None):
    """``(queries kept, their candidate-id pools, mode)``: the top ``pool`` exemplars per query by the current
    retriever (``qenc``; ``mode`` — the run's ``model.mode``, so *w/o EA* never uses attributes — default ``reg``
    when the index has attributes, else ``semantic``), own conversation excluded; queries without any candidate
    are dropped."""
    mode = "semantic" if not index.has_attributes else (mode or "reg")
    contexts = [[t.text for t in q.context] for q in queries]
    rows = index.search(contexts, k=pool, mode=mode, exclude_dialogue_ids=[q.dialogue_id for q in queries],
                        query_attributes=_query_attributes(queries) if mode == "reg" else None, query_encoder=qenc)
    keep = [i for i, r in enumerate(rows) if r]
    return [queries[i] for i in keep], [[e.id for e in rows[i]] for i in keep], mode


def likelihood_scorer(g1, queries, exemplars):
    """``score(pairs) -> texts`` for the decode cache under ``target: g1-likelihood`` (G1+RAG): G1's mean
    log-likelihood of each query's gold response with exactly that exemplar in its input (``Generator.score``),
    written as text so the same on-disk cache holds it."""
    import dataclasses

    from empathkit.types import Controls

    def score(pairs):
        exs = [queries[q] for q, _ in pairs]
        exs = [dataclasses.replace(ex, annotations=dataclasses.replace(ex.annotations, exemplars=())) for ex in exs]
        ctrls = [Controls(exemplars=(exemplars[e],) if e else ()) for _, e in pairs]
        return [repr(-s.mean_nll) for s in g1.score(exs, ctrls)]

    return score


class Distiller:
    """What one distillation step needs (Eq. 3–5), shared by stage 2 (:func:`train_retriever`) and stage 3 (the
    joint loss, ``reg/joint.py``): the training queries with their fixed candidate pools, the frozen exemplar
    vectors, the G1-decode (or G1-likelihood) cache, the seeded augmenter, F and the loss."""

    def __init__(self, index: ExemplarIndex, g1, queries: Sequence[Example], pools: Sequence[Sequence[str]],
                 cfg: RetrieverTrainConfig, out_dir: Path, mode: str):
        from empathkit.models.generation import GenerationSettings

        self.cfg, self.queries, self.pools = cfg, list(queries), [list(p) for p in pools]
        self.contexts = [[t.text for t in q.context] for q in self.queries]
        self.row_of = {e.id: j for j, e in enumerate(index.exemplars)}
        self.vectors = torch.from_numpy(np.ascontiguousarray(index.vectors(), dtype=np.float32))  # frozen
        self.by_id = {e.id: e for e in index.exemplars}
        settings = GenerationSettings(max_new_tokens=cfg.max_new_tokens, do_sample=False,
                                      batch_size=cfg.decode_batch_size)
        extra = {} if cfg.target == "utility" else {"target": cfg.target}
        self.cache = DecodeCache.open(Path(out_dir) / DECODES_DIR, g1=_g1_name(g1),
                                      settings=settings.model_dump(mode="json"), mode=mode, pool=cfg.pool, **extra)
        qmap = {q.id: q for q in self.queries}
        self.decode = pair_decoder(g1, qmap, self.by_id, settings) if cfg.target == "utility" \
            else likelihood_scorer(g1, qmap, self.by_id)
        self.augmenter = CandidateAugmenter(index.exemplars, cfg.distill.k, seed=cfg.seed)
        self.utility = cfg.distill.utility_fn() if cfg.target == "utility" else None
        self.loss_fn = cfg.distill.retrieval_loss()

    def refresh(self, index: ExemplarIndex, pools: Sequence[Sequence[str]]) -> None:
        """Use a refreshed index's vectors and the pools retrieved from it (same exemplars, same queries)."""
        if len(pools) != len(self.queries):
            raise ValueError(f"{len(pools)} refreshed pools for {len(self.queries)} queries")
        self.pools = [list(p) for p in pools]
        self.vectors = torch.from_numpy(np.ascontiguousarray(index.vectors(), dtype=np.float32))

    def augment(self) -> tuple[list[list[str]], list[list[bool]]]:
        """One Eq. 5 draw over every query's pool: ``(candidate ids, replaced flags)``."""
        cands, flags = [], []
        for q, pool_ids in zip(self.queries, self.pools):
            c, f = self.augmenter([self.by_id[e] for e in pool_ids], q.dialogue_id)
            cands.append([e.id for e in c])
            flags.append(f)
        return cands, flags

    def fill(self, cands: Sequence[Sequence[str]], progress: bool = True, desc: str = "G1 decodes") -> int:
        """Decode (or score) the (query, candidate) pairs not cached yet; returns how many were new."""
        from tqdm.auto import tqdm

        todo = self.cache.missing([(q.id, e) for q, row in zip(self.queries, cands) for e in row])
        bs = self.cfg.decode_batch_size
        bar = tqdm(total=len(todo), desc=desc, unit="pair", disable=not progress)
        for b in range(0, len(todo), bs):
            self.cache.fill(todo[b:b + bs], self.decode, batch_size=bs)
            bar.update(len(todo[b:b + bs]))
        bar.close()
        return len(todo)

    def utilities(self, ids: Sequence[int], cid: Sequence[Sequence[str]]) -> torch.Tensor:
        """``F`` (B, K) from the cache (before Eq. 3's softmax, so padded candidates can be masked)."""
        texts = []
        for i, row in zip(ids, cid, strict=True):
            q = self.queries[i].id
            t = [self.cache.get(q, e) for e in row]
            if any(x is None for x in t):
                raise KeyError(f"no cached G1 decode for query {q!r} with one of {row}: fill the cache first")
            texts.append(t)
        if self.utility is None:  # g1-likelihood: the cached mean log-likelihoods
            return torch.tensor([[float(x) for x in r] for r in texts])
        return self.utility.matrix(texts, [self.queries[i].target for i in ids])

    def loss(self, qenc, ids: Sequence[int], cands: Sequence[Sequence[str]]):
        """``(L_R, P, mask)`` of the queries ``ids`` with candidates ``cands[i]`` (Eq. 3 + 4; gradient into
        ``qenc`` only)."""
        width = max(len(cands[i]) for i in ids)
        cid = [list(cands[i]) + [cands[i][0]] * (width - len(cands[i])) for i in ids]
        mask = torch.tensor([[j < len(cands[i]) for j in range(width)] for i in ids])
        F = self.utilities(ids, cid)
        target = distillation_target(F, self.cfg.distill.tau, mask)  # Eq. 3 (padding: probability 0)
        emb = self.vectors[torch.tensor([[self.row_of[e] for e in row] for row in cid])]
        q = qenc.encode([self.contexts[i] for i in ids], batch_size=len(ids))
        return self.loss_fn(F, similarity_scores(q, emb), mask), target, mask


def stage_index(run_dir: Path, index: ExemplarIndex | None = None) -> ExemplarIndex:
    """The exemplar index a REG run retrieves from after stage 2: the refreshed one (``retriever/index``, written
    under ``reindex_every``) when it exists, else ``index`` (default: ``run_dir/index``). A loaded refreshed index
    keeps ``index``'s encoder / tagger objects."""
    d = Path(run_dir) / "retriever" / INDEX_DIR
    if (d / INDEX_CONFIG_FILE).is_file():
        return ExemplarIndex.load(d, encoder=getattr(index, "_encoder", None), tagger=getattr(index, "_tagger", None))
    return index if index is not None else ExemplarIndex.load(Path(run_dir) / "index")


def train_retriever(index: ExemplarIndex, g1, queries: Sequence[Example], cfg: RetrieverTrainConfig,
                    out_dir: Path, progress: bool = True, encoder_init=None, mode: str | None = None) -> Path:
    """Distil G1's utilities into a query encoder (module docstring); returns ``out_dir``. ``encoder_init``: the
    encoder to start from (object, name or folder; default the index's ``encoder`` name); ``mode``: retrieval mode
    of the candidate pools (:func:`candidate_pools`). A finished run with the same config returns at once; the G1
    decodes are cached and reused."""
    from tqdm.auto import tqdm

    cfg = cfg if isinstance(cfg, RetrieverTrainConfig) else RetrieverTrainConfig.model_validate(cfg)
    out = Path(out_dir)
    queries = list(queries)[: cfg.queries] if cfg.queries else list(queries)
    want = {"config": cfg.model_dump(mode="json"), "queries": len(queries), "corpus_size": len(index),
            "g1": _g1_name(g1), "mode": "semantic" if not index.has_attributes else (mode or "reg")}
    done = out / CONFIG_FILE
    if (out / ENCODER_DIR).is_dir() and done.is_file():
        prev = json.loads(done.read_text(encoding="utf-8"))
        if {k: prev.get(k) for k in want} == want:
            return out
    out.mkdir(parents=True, exist_ok=True)
    done.unlink(missing_ok=True)
    if (out / INDEX_DIR).is_dir():  # a refreshed index of an earlier run
        import shutil

        shutil.rmtree(out / INDEX_DIR)

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    qenc = QueryEncoder.from_encoder(encoder_init if encoder_init is not None else index.config["encoder"])

    t0 = time.time()  # 1. the fixed candidate pool (current retriever = the initial query encoder)
    queries, pools, mode = candidate_pools(index, queries, qenc, cfg.pool, mode)
    t_pool = time.time() - t0
    dist = Distiller(index, g1, queries, pools, cfg, out, mode)
    opt = torch.optim.AdamW([p for p in qenc.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)

    t_decode = t_train = t_reindex = 0.0
    decoded = steps = augmented = total = refreshes = 0
    step_rng = random.Random(f"reg-retriever-order-{cfg.seed}")
    log_rows: list[dict[str, Any]] = []
    (out / LOG_FILE).write_text("", encoding="utf-8")
    n_steps = cfg.epochs * math.ceil(len(queries) / cfg.batch_size)

    def write_log(row: dict[str, Any]) -> None:
        with (out / LOG_FILE).open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def draw(desc: str):
        """An Eq. 5 draw over the current pools and its missing G1 decodes."""
        nonlocal augmented, total, decoded, t_decode
        c, f = dist.augment()
        augmented += sum(map(sum, f))
        total += sum(map(len, f))
        t = time.time()
        decoded += dist.fill(c, progress, desc)
        t_decode += time.time() - t
        return c, f

    for epoch in range(cfg.epochs):
        cands, flags = draw(f"G1 decodes (epoch {epoch + 1})")  # 2. augmentation (once per epoch) + 3. decodes
        t0 = time.time()  # 4. distillation steps
        qenc.train()
        order = list(range(len(queries)))
        step_rng.shuffle(order)
        bar = tqdm(total=math.ceil(len(order) / cfg.batch_size), desc=f"retriever (epoch {epoch + 1})", unit="step",
                   disable=not progress)
        for b in range(0, len(order), cfg.batch_size):
            ids = order[b:b + cfg.batch_size]
            loss, target, _ = dist.loss(qenc, ids, cands)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            row = {"step": steps, "epoch": epoch + 1, "loss": float(loss.detach()), "entropy": _entropy(target),
                   "augmented": sum(sum(flags[i]) for i in ids) / max(1, sum(len(flags[i]) for i in ids)),
                   "queries": len(ids)}
            log_rows.append(row)
            write_log(row)
            bar.update(1)
            if cfg.reindex_every and steps % cfg.reindex_every == 0 and steps < n_steps:
                t1 = time.time()  # periodic re-indexing (module docstring)
                qenc.eval()
                index = index.reembedded(qenc, progress=progress, after_step=steps)
                kept, pools, _ = candidate_pools(index, queries, qenc, cfg.pool, mode)
                if [q.id for q in kept] != [q.id for q in queries]:
                    raise RuntimeError("a refreshed index left a training query without candidates")
                changed = sum(len(set(a) - set(b)) for a, b in zip(pools, dist.pools)) / max(1, sum(map(len, pools)))
                dist.refresh(index, pools)
                refreshes += 1
                t_reindex += time.time() - t1
                cands, flags = draw(f"G1 decodes (refresh {refreshes})")
                t_train -= time.time() - t1  # re-indexing and its decodes are counted apart from training
                write_log({"kind": "reindex", "after_step": steps, "pool_changed": round(changed, 4),
                           "seconds": round(time.time() - t1, 2)})
                qenc.train()
        bar.close()
        qenc.eval()
        t_train += time.time() - t0

    qenc.save(out / ENCODER_DIR)
    if cfg.reindex_every:  # a last refresh with the final encoder: what the run retrieves from from now on
        t1 = time.time()
        index.reembedded(qenc, progress=progress, after_step=steps, final=True).save(out / INDEX_DIR)
        t_reindex += time.time() - t1
    summary = dict(want, seed=cfg.seed, mode=mode, steps=steps, epochs=cfg.epochs, queries_used=len(queries),
                   pool=cfg.pool, decoded=decoded, cached=len(dist.cache), augmented=augmented, candidates=total,
                   augmented_share=augmented / max(1, total), cache_file=str(dist.cache.path.name),
                   refreshes=refreshes,
                   seconds={"pool": round(t_pool, 2), "decoding": round(t_decode, 2), "training": round(t_train, 2),
                            "reindexing": round(t_reindex, 2)},
                   final_loss=log_rows[-1]["loss"] if log_rows else None)
    done.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return out
