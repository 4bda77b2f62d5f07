"""REG's dense exemplar index: a sentence encoder + an exact FAISS inner-product index over the train corpus, and
the emotion-attribute re-ranking of Sec. 3.2.3's initial retrieval.

- **Encoder**: MiniLM (``minilm-l6``, the embedded all-MiniLM-L6-v2, offline) by default; any sentence-transformers
  or Hugging Face id for online users (e.g. the paper's ``facebook/contriever``: sentence-transformers wraps a plain
  HF encoder with mean pooling, which is Contriever's own pooling). Embeddings are L2-normalised, so the FAISS
  inner product (``IndexFlatIP``, exact; ~40k × 384 floats needs no approximate index) is the cosine. The key of an
  exemplar is its **context** (turns joined by spaces), the same text form as a query: retrieval finds past
  conversations like the current one and hands over the listener's response.
- **Score** (``mode: reg``): ``score = cos + w · agreement`` with ``agreement = Σ_a w_a·[q_a = e_a] / Σ_a w_a`` over
  the four attributes (equal weights by default = the fraction of the four that agree); FAISS returns a pool of
  ``pool`` (64) candidates by cosine, the attribute term re-ranks them, the top ``k`` are returned. A learned
  scoring head is *not* used: the paper learns the retriever by distilling G1's token-level metrics (Eq. 3–5),
  which needs a trained G1 — that is a later step; until then a fixed, inspectable combination is the honest
  baseline. ``mode: semantic`` (= ``no-emotion-attributes``) is cosine alone: the LEMPEx / "Exemplar" baseline
  (without LEMPEx's gold-emotion filter, a test-time leak). :class:`RandomRetriever` is the alignment baseline.
- **On disk** (a directory, no pickles): ``index.faiss`` (FAISS's own format), ``exemplars.jsonl`` (one
  ``Exemplar`` per line with its attributes, ED label and dialogue id) and ``config.json`` (encoder, corpus size,
  attribute source, seed, data selection, default score settings, build times). :func:`build_index` skips the
  work when the saved build key matches, and reuses the saved attributes (or embeddings) when only the encoder (or
  only the attribute settings) changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from empathkit.errors import ConfigError, DataError, ResourceMissing
from empathkit.methods.reg.attributes import ATTRIBUTES, LEVELS, AttributeTagger, compute_attributes
from empathkit.methods.reg.corpus import dialogue_id, load_corpus_examples, to_exemplars
from empathkit.runconfig import DataConfig
from empathkit.types import Exemplar

log = logging.getLogger(__name__)

FORMAT = 1
MODES = ("reg", "semantic")
MODE_ALIASES = {"no-emotion-attributes": "semantic", "exemplar": "semantic", "lempex": "semantic"}
INDEX_FILE, EXEMPLARS_FILE, CONFIG_FILE = "index.faiss", "exemplars.jsonl", "config.json"


class AttributeConfig(BaseModel):
    model_config = {"extra": "forbid"}

    source: Literal["context", "response", "both", "none"] = Field(
        "context", description="text the corpus attributes describe (attributes.py); none = no attributes "
                               "(semantic retrieval only, no EPITOME classifiers needed)")
    classifiers: dict[str, str] = Field(default_factory=dict, description="EPITOME kind → Hub id / folder")


class ScoreConfig(BaseModel):
    model_config = {"extra": "forbid"}

    weight: float = Field(0.2, ge=0, description="w in score = cos + w * agreement")
    attribute_weights: dict[str, float] = Field(default_factory=lambda: {a: 1.0 for a in ATTRIBUTES},
                                                description="per-attribute weights of the agreement (normalised)")
    pool: int = Field(64, ge=1, description="FAISS candidates (by cosine) re-ranked with the attribute term")


class RetrievalConfig(BaseModel):
    """What ``empathkit retrieve --build-index`` reads (``key=value`` overrides, e.g. ``data.train_limit=2000``)."""

    model_config = {"extra": "forbid"}

    encoder: str = "minilm-l6"
    seed: int = 0
    batch_size: int = Field(64, ge=1)
    data: DataConfig = Field(default_factory=DataConfig)
    attributes: AttributeConfig = Field(default_factory=AttributeConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)


# ---------------------------------------------------------------------------------------------------------- encoder
@functools.lru_cache(maxsize=2)
def load_encoder(name: str):
    """A SentenceTransformer on CPU (cached per process); ``minilm-l6`` is the embedded offline copy."""
    from sentence_transformers import SentenceTransformer

    from empathkit.models.backbones import encoder_path

    path = encoder_path(name)
    try:
        return SentenceTransformer(path, device="cpu", trust_remote_code=False)
    except OSError as e:
        raise ResourceMissing(f"could not load sentence encoder {name!r} ({path}): {str(e).splitlines()[0]}") from None


def query_text(context: Sequence[str]) -> str:
    return " ".join(t.strip() for t in context)


def embed(encoder, texts: Sequence[str], batch_size: int = 64, progress: bool = False, chunk: int = 1024) -> np.ndarray:
    """L2-normalised float32 embeddings ``[n, d]`` (chunks of ``chunk`` texts under one progress bar)."""
    import faiss
    from tqdm.auto import tqdm

    parts = []
    bar = tqdm(total=len(texts), desc="embeddings", unit="text", disable=not progress)
    for i in range(0, len(texts), chunk):
        part = list(texts[i:i + chunk])
        parts.append(np.asarray(encoder.encode(part, batch_size=batch_size, convert_to_numpy=True,
                                               normalize_embeddings=True, show_progress_bar=False), dtype=np.float32))
        bar.update(len(part))
    bar.close()
    v = np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros((0, 1), np.float32), dtype=np.float32)
    if len(v):
        faiss.normalize_L2(v)
    return v


def _codes(rows: Iterable[dict[str, Any]]) -> np.ndarray:
    """Attribute levels as ints ``[n, 4]`` (low/mid/high = 0/1/2; −1 where an attribute is missing)."""
    return np.asarray([[LEVELS.index(r[a]) if r.get(a) in LEVELS else -1 for a in ATTRIBUTES] for r in rows],
                      dtype=np.int8).reshape(-1, len(ATTRIBUTES))


def normalise_mode(mode: str | None) -> str:
    m = MODE_ALIASES.get(mode or "reg", mode or "reg")
    if m not in MODES:
        raise ConfigError(f"unknown retrieval mode {mode!r}; expected one of {list(MODES)} "
                          f"(or {', '.join(MODE_ALIASES)} for semantic)")
    return m


def _exclusions(exclude, n: int) -> list[set[str]]:
    if exclude is None:
        return [set() for _ in range(n)]
    if len(exclude) != n:
        raise ValueError(f"{len(exclude)} exclude_dialogue_ids entries for {n} queries")
    return [set() if e is None else ({e} if isinstance(e, str) else set(e)) for e in exclude]


# ------------------------------------------------------------------------------------------------------------ index
class ExemplarIndex:
    """Exemplars + their FAISS index; :meth:`search` retrieves by ``reg`` or ``semantic`` score."""

    def __init__(self, exemplars: Sequence[Exemplar], index, config: dict[str, Any], encoder=None,
                 tagger: AttributeTagger | None = None, query_encoder=None):
        if index.ntotal != len(exemplars):
            raise DataError(f"index holds {index.ntotal} vectors for {len(exemplars)} exemplars")
        self.exemplars = list(exemplars)
        self.index = index
        self.config = config
        self._encoder = encoder
        self._tagger = tagger
        self.query_encoder = query_encoder  # embeds queries when set (REG stage 2, reg/retriever.QueryEncoder)
        self.codes = _codes(e.attributes for e in self.exemplars)
        self.dialogue_ids = [dialogue_id(e) for e in self.exemplars]
        counts: dict[str, int] = {}
        for d in self.dialogue_ids:
            counts[d] = counts.get(d, 0) + 1
        self.max_per_dialogue = max(counts.values(), default=0)

    @classmethod
    def from_vectors(cls, exemplars: Sequence[Exemplar], vectors: np.ndarray, config: dict[str, Any], **kw):
        import faiss

        index = faiss.IndexFlatIP(int(vectors.shape[1]))
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(exemplars, index, config, **kw)

    def __len__(self) -> int:
        return len(self.exemplars)

    @property
    def has_attributes(self) -> bool:
        return len(self) > 0 and bool((self.codes >= 0).all())

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_encoder(self.config["encoder"])
        return self._encoder

    @property
    def tagger(self) -> AttributeTagger:
        if self._tagger is None:
            self._tagger = AttributeTagger(source="context", classifier_sources=self.config.get("classifiers") or {})
        return self._tagger

    def vectors(self) -> np.ndarray:
        return self.index.reconstruct_n(0, self.index.ntotal) if len(self) else np.zeros((0, 1), np.float32)

    def reembedded(self, encoder, batch_size: int = 64, progress: bool = False, **note: Any) -> "ExemplarIndex":
        """An index refresh: the same exemplars (attributes included) with their contexts embedded again by
        ``encoder`` (e.g. a trained query encoder), in a new FAISS index. ``note`` goes to ``config["refreshed"]``;
        the build key's encoder becomes ``"refreshed"``, so :func:`build_index` never takes it for an index of the
        configured encoder."""
        v = embed(encoder, [query_text(e.context) for e in self.exemplars], batch_size, progress)
        key = {**self.config.get("key", {}), "encoder": "refreshed"}
        cfg = {**self.config, "dim": int(v.shape[1]), "key": key, "refreshed": dict(note)}
        return ExemplarIndex.from_vectors(self.exemplars, v, cfg, encoder=encoder, tagger=self._tagger)

    # search ---------------------------------------------------------------------------------------------------
    def search(self, contexts: Sequence[Sequence[str]], k: int = 5, mode: str | None = "reg",
               exclude_dialogue_ids: Sequence[str | Iterable[str] | None] | None = None,
               query_attributes: Sequence[dict[str, Any]] | None = None, weight: float | None = None,
               attribute_weights: dict[str, float] | None = None, pool: int | None = None,
               query_encoder=None) -> list[list[Exemplar]]:
        """Top-``k`` exemplars per query context (turns, oldest first). ``exclude_dialogue_ids[i]``: conversation
        id(s) whose exemplars query ``i`` must not get (its own). ``query_attributes`` default: computed from the
        contexts with the EPITOME classifiers (``reg`` only). Returned exemplars carry ``score`` and, in their
        attributes, ``cosine`` and ``agreement`` (None in ``semantic`` mode). ``query_encoder`` (default
        ``self.query_encoder``, else the index's ``encoder``) embeds the queries; the exemplar vectors are fixed."""
        mode = normalise_mode(mode)
        sc = self.config.get("score", {})
        w = float(sc.get("weight", 0.2) if weight is None else weight)
        aw = attribute_weights or sc.get("attribute_weights") or {a: 1.0 for a in ATTRIBUTES}
        unknown = set(aw) - set(ATTRIBUTES)
        if unknown:
            raise ConfigError(f"unknown attribute(s) {sorted(unknown)} in attribute_weights; expected {list(ATTRIBUTES)}")
        wvec = np.asarray([float(aw.get(a, 0.0)) for a in ATTRIBUTES], dtype=np.float32)
        if mode == "reg" and wvec.sum() <= 0:
            raise ConfigError("attribute_weights must have a positive sum")
        pool = max(int(pool or sc.get("pool", 64)), k)
        n = len(contexts)
        excl = _exclusions(exclude_dialogue_ids, n)
        if n == 0 or len(self) == 0:
            return [[] for _ in range(n)]
        if mode == "reg":
            if not self.has_attributes:
                raise ConfigError("this index was built without emotion attributes (attributes.source=none): "
                                  "use --mode semantic, or rebuild it with attributes.source=context")
            qcodes = _codes(query_attributes if query_attributes is not None else self.tagger.tag_queries(contexts))
        qenc = next((e for e in (query_encoder, self.query_encoder) if e is not None), None) or self.encoder
        q = embed(qenc, [query_text(c) for c in contexts])
        fetch = min(len(self), pool + self.max_per_dialogue * max((len(e) for e in excl), default=0))
        cos_all, idx_all = self.index.search(q, fetch)
        out = []
        for i in range(n):
            cand = [(float(c), int(j)) for c, j in zip(cos_all[i], idx_all[i])
                    if j >= 0 and self.dialogue_ids[j] not in excl[i]][:pool]
            if not cand:
                out.append([])
                continue
            cos = np.asarray([c for c, _ in cand], dtype=np.float64)
            js = np.asarray([j for _, j in cand])
            if mode == "reg":
                agree = ((self.codes[js] == qcodes[i]) * wvec).sum(axis=1) / wvec.sum()
                score = cos + w * agree
            else:
                agree, score = None, cos
            order = sorted(range(len(js)), key=lambda t: (-score[t], -cos[t], js[t]))[:k]
            row = []
            for t in order:
                e = self.exemplars[js[t]]
                attrs = dict(e.attributes, cosine=float(cos[t]), agreement=None if agree is None else float(agree[t]))
                row.append(Exemplar(id=e.id, response=e.response, context=e.context, score=float(score[t]),
                                    attributes=attrs))
            out.append(row)
        return out

    # disk -----------------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        import faiss

        from empathkit.runs import write_jsonl

        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        (d / CONFIG_FILE).unlink(missing_ok=True)  # config.json last: its presence marks a complete index
        faiss.write_index(self.index, str(d / INDEX_FILE))
        write_jsonl(self.exemplars, d / EXEMPLARS_FILE)
        (d / CONFIG_FILE).write_text(json.dumps(self.config, indent=2), encoding="utf-8")
        return d

    @classmethod
    def load(cls, folder: str | Path, encoder=None, tagger: AttributeTagger | None = None,
             query_encoder=None) -> "ExemplarIndex":
        import faiss

        from empathkit.runs import iter_jsonl

        d = Path(folder)
        if not (d / CONFIG_FILE).is_file():
            raise ResourceMissing(f"no retrieval index in {d}: build one with "
                                  f"'empathkit retrieve --build-index --out {d}'")
        config = json.loads((d / CONFIG_FILE).read_text(encoding="utf-8"))
        if config.get("format") != FORMAT:
            raise DataError(f"index format {config.get('format')!r}, expected {FORMAT}: rebuild it", file=str(d / CONFIG_FILE))
        exemplars = [Exemplar.from_json(row) for _, row in iter_jsonl(d / EXEMPLARS_FILE)]
        return cls(exemplars, faiss.read_index(str(d / INDEX_FILE)), config, encoder=encoder, tagger=tagger,
                   query_encoder=query_encoder)


class RandomRetriever:
    """Seeded random exemplars (never from an excluded conversation): Table 5's "RAG"-like floor."""

    def __init__(self, exemplars: Sequence[Exemplar], seed: int = 0):
        self.exemplars = list(exemplars)
        self.seed = seed
        self.dialogue_ids = [dialogue_id(e) for e in self.exemplars]

    def search(self, contexts: Sequence[Sequence[str]], k: int = 5, mode: str | None = None,
               exclude_dialogue_ids: Sequence[str | Iterable[str] | None] | None = None, **_: Any) -> list[list[Exemplar]]:
        excl = _exclusions(exclude_dialogue_ids, len(contexts))
        out = []
        for i in range(len(contexts)):
            rng = np.random.default_rng([self.seed, i])
            picks = [int(j) for j in rng.permutation(len(self.exemplars)) if self.dialogue_ids[j] not in excl[i]][:k]
            out.append([Exemplar(id=self.exemplars[j].id, response=self.exemplars[j].response,
                                 context=self.exemplars[j].context, score=0.0,
                                 attributes=dict(self.exemplars[j].attributes)) for j in picks])
        return out


# ------------------------------------------------------------------------------------------------------------ build
def _fingerprint(exemplars: Sequence[Exemplar]) -> str:
    h = hashlib.sha256()
    for e in exemplars:
        h.update(json.dumps([e.id, e.response, list(e.context)], ensure_ascii=False).encode("utf-8"))
    return h.hexdigest()[:16]


CORPUS_DATA_FIELDS = ("source", "protocol", "max_history", "train_limit", "stratify")


def corpus_data(data: DataConfig) -> dict[str, Any]:
    """The ``data`` fields the corpus depends on (split / valid / test settings never touch it)."""
    return {f: getattr(data, f) for f in CORPUS_DATA_FIELDS}


def build_key(cfg: RetrievalConfig) -> dict[str, Any]:
    """What the saved index depends on (score settings are search-time defaults and never force a rebuild)."""
    return {"format": FORMAT, "encoder": cfg.encoder, "seed": cfg.seed, "data": corpus_data(cfg.data),
            "attribute_source": cfg.attributes.source, "classifiers": dict(cfg.attributes.classifiers)}


def _up_to_date(out: Path, cfg: RetrievalConfig, encoder, tagger) -> ExemplarIndex:
    log.info("retrieval index in %s is up to date (same build config): not rebuilt", out)
    idx = ExemplarIndex.load(out, encoder=encoder, tagger=tagger)
    idx.config["score"] = cfg.score.model_dump()
    return idx


def build_index(cfg: RetrievalConfig | dict | None, out: str | Path, *, examples=None, encoder=None,
                tagger: AttributeTagger | None = None, force: bool = False, progress: bool = True) -> ExemplarIndex:
    """Build (or load, when the saved build key matches) the index of the train corpus into ``out``.

    ``examples``: corpus examples to use instead of reading ``cfg.data`` (tests; still train-only by the caller's
    choice); ``encoder`` / ``tagger``: objects to use instead of loading the configured ones."""
    from empathkit.config import validate

    cfg = cfg if isinstance(cfg, RetrievalConfig) else validate(RetrievalConfig, cfg or {})
    out = Path(out)
    key = build_key(cfg)
    prev = json.loads((out / CONFIG_FILE).read_text(encoding="utf-8")) if (out / CONFIG_FILE).is_file() else None
    up_to_date = prev is not None and not force and prev.get("key") == key
    if up_to_date and examples is None:
        return _up_to_date(out, cfg, encoder, tagger)
    t0 = time.time()
    exs = list(examples) if examples is not None else load_corpus_examples(cfg.data, cfg.seed)
    base = to_exemplars(exs)
    fp = _fingerprint(base)
    if up_to_date and prev.get("fingerprint") == fp:
        return _up_to_date(out, cfg, encoder, tagger)
    old = ExemplarIndex.load(out) if prev and prev.get("fingerprint") == fp and not force else None
    same = (lambda *fields: old is not None and all(prev["key"].get(f) == key[f] for f in fields))
    source = cfg.attributes.source
    t1 = time.time()
    if source == "none":
        exemplars = base
    elif same("attribute_source", "classifiers"):
        log.info("reusing the emotion attributes saved in %s", out)
        exemplars = [Exemplar(id=b.id, response=b.response, context=b.context, attributes=o.attributes)
                     for b, o in zip(base, old.exemplars)]
    else:
        tagger = tagger or AttributeTagger(source=source, classifier_sources=cfg.attributes.classifiers)
        items = [(e.context, e.response) for e in base]
        exemplars = to_exemplars(exs, compute_attributes(items, tagger, progress=progress))
    t2 = time.time()
    if same("encoder"):
        log.info("reusing the embeddings saved in %s", out)
        vectors = old.vectors()
    else:
        vectors = embed(encoder or load_encoder(cfg.encoder), [query_text(e.context) for e in exemplars],
                        cfg.batch_size, progress)
    t3 = time.time()
    config = {"format": FORMAT, "encoder": cfg.encoder, "corpus_size": len(exemplars), "attribute_source": source,
              "seed": cfg.seed, "data": corpus_data(cfg.data), "classifiers": dict(cfg.attributes.classifiers),
              "score": cfg.score.model_dump(), "dim": int(vectors.shape[1]), "faiss": "IndexFlatIP",
              "fingerprint": fp, "key": key,
              "seconds": {"corpus": round(t1 - t0, 2), "attributes": round(t2 - t1, 2),
                          "embeddings": round(t3 - t2, 2)}}
    idx = ExemplarIndex.from_vectors(exemplars, vectors, config, encoder=encoder, tagger=tagger)
    idx.config["seconds"]["total"] = round(time.time() - t0, 2)
    idx.save(out)
    return idx


# ------------------------------------------------------------------------------------------------------- CLI face
def resolve_index_dir(index: str | Path | None = None, run: str | Path | None = None) -> Path:
    """``--index <dir>`` as given; ``--run <dir>``: the run's ``index/`` folder (or the run dir if it is one)."""
    if (index is None) == (run is None):
        raise ConfigError("give exactly one of --index <dir> or --run <dir>")
    if index is not None:
        return Path(index)
    r = Path(run)
    return r if (r / CONFIG_FILE).is_file() and (r / INDEX_FILE).is_file() else r / "index"


def retrieve(context: Sequence[str], index: str | Path | None = None, run: str | Path | None = None, k: int = 5,
             mode: str = "reg", loaded: "ExemplarIndex | None" = None) -> list[Exemplar]:
    """The top-``k`` exemplars of one context (turns, oldest first) from a saved index (``loaded``: an index
    object to search instead, e.g. a trained run's ``method.run_index``)."""
    if not context or not any(t.strip() for t in context):
        raise ConfigError("give the context to retrieve for (one or more turns)")
    idx = loaded if loaded is not None else ExemplarIndex.load(resolve_index_dir(index, run))
    return idx.search([list(context)], k=k, mode=mode)[0]


def build_from_overrides(overrides: Sequence[str], out: str | Path, config: str | None = None,
                         force: bool = False) -> ExemplarIndex:
    """``empathkit retrieve --build-index``: a :class:`RetrievalConfig` from a YAML file and ``key=value``
    overrides, built into ``out``."""
    from empathkit.config import load_config, validate

    cfg = validate(RetrievalConfig, load_config(config, overrides or []))
    return build_index(cfg, out, force=force)
