"""Shared, lazily loaded and cached resources for metrics: tokenisers, the sentence encoder, lexicons, the ED
document-frequency table, a causal LM, VADER, the auxiliary classifiers.

A metric receives a :class:`Resources` object and asks it for what it needs (``resources.encoder()``,
``resources.vad_lexicon()`` …). Nothing is loaded until asked for, and everything heavy is cached per process
(module-level ``lru_cache``), so evaluating several systems or presets loads each model once.

Paths come from the config (``ResourceConfig``) or the data root (``$EMPATHKIT_DATA`` / ``../shared/data``); caches
(the DF table) live under :func:`empathkit.paths.cache_dir`, never in the repository.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, Field

from empathkit.errors import DataError, ResourceMissing

log = logging.getLogger(__name__)


class ResourceConfig(BaseModel):
    """Where each resource comes from. Every field is optional: defaults resolve to local, offline copies."""

    model_config = {"extra": "forbid"}

    data_root: str | None = Field(None, description="data folder (default $EMPATHKIT_DATA or ../shared/data)")
    encoder: str = Field("minilm-l6", description="sentence encoder for BERTScore / Vector Extrema (name, path or hub id)")
    lm: str = Field("smollm2-135m-instruct", description="causal LM for perplexity / causal BARTScore / local judge")
    lm_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="dtype of the causal LM: auto = bfloat16 where it is native (avx512_bf16/AMX CPUs, "
                            "bf16 GPUs; ~3x faster on this CPU), else float32. bfloat16 shifts LM-based scores by "
                            "about 1 % (docs/metrics/README.md); set float32 for bit-comparable numbers")
    bart_model: str | None = Field(None, description="a BART (seq2seq) model path or hub id for the original BARTScore")
    vad_lexicon: str | None = Field(None, description="NRC VAD lexicon file (default: <data>/nrc_vad/v2.1/...)")
    intensity_lexicon: str | None = Field(None, description="NRC Emotion Intensity lexicon (default: <data>/nrc_emotion_intensity/...)")
    ed_dir: str | None = Field(None, description="EmpatheticDialogues release folder for the NIDF DF table")
    embeddings: str | None = Field(None, description="word vectors (GloVe/word2vec text format) for Vector Extrema; default: the encoder's static token embeddings")
    device: str = "cpu"
    batch_size: int = Field(32, ge=1)
    judge: dict[str, Any] = Field(default_factory=dict, description="LLM-as-judge settings (see metrics/judge.py)")
    classifiers: dict[str, str] = Field(default_factory=dict, description="auxiliary classifier name → path / hub id")


# ------------------------------------------------------------------------------------------------ tokenisation
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=\S)")


def nltk_tokenize(text: str, lower: bool = False) -> list[str]:
    """NLTK ``word_tokenize`` without the ``punkt`` model (not downloadable here).

    ``word_tokenize`` = punkt sentence split + ``NLTKWordTokenizer`` per sentence. We split sentences with a regexp
    on ``.!?`` followed by whitespace (punkt also knows abbreviations such as "Mr."; the difference only affects
    whether a sentence-internal period is split off its word) and run the same ``NLTKWordTokenizer``
    (``word_tokenize(..., preserve_line=True)``) on each piece.
    """
    from nltk.tokenize import word_tokenize

    if lower:
        text = text.lower()
    out: list[str] = []
    for sent in _SENT_SPLIT.split(text.strip()):
        if sent:
            out.extend(word_tokenize(sent, preserve_line=True))
    return out


def tokenize(text: str, scheme: str = "nltk", lower: bool = False) -> list[str]:
    """``nltk`` (see :func:`nltk_tokenize`) or ``whitespace`` (``str.split()``)."""
    if scheme == "nltk":
        return nltk_tokenize(text, lower)
    if scheme in ("whitespace", "ws", "split"):
        return (text.lower() if lower else text).split()
    raise ValueError(f"unknown tokenisation scheme {scheme!r} (nltk | whitespace)")


def wordnet_available() -> bool:
    """True when NLTK's WordNet corpus is installed (it cannot be downloaded on this machine)."""
    try:
        from nltk.corpus import wordnet

        wordnet.synsets("dog")
        return True
    except (LookupError, OSError):
        return False


# ------------------------------------------------------------------------------------------------ cached loaders
@functools.lru_cache(maxsize=2)
def _sentence_encoder(name: str, device: str):
    from sentence_transformers import SentenceTransformer

    from empathkit.models.backbones import encoder_path

    path = encoder_path(name)
    try:
        return SentenceTransformer(path, device=device)
    except OSError as e:
        raise ResourceMissing(f"could not load encoder {name!r} ({path}): {str(e).splitlines()[0]}") from None


@functools.lru_cache(maxsize=2)
def _causal_lm(name: str, dtype: str = "float32"):
    from empathkit.models.backbones import load_backbone

    return load_backbone(name, dtype)


@functools.lru_cache(maxsize=4)
def _intensity_lexicon(path: str, how: str = "max") -> dict[str, float]:
    """NRC Emotion Intensity Lexicon: ``word<TAB>emotion<TAB>score`` → word → its intensity.

    ``how='max'``: the word's max over its emotions; ``'last-line'``: the score on the word's *last* line (Lee et
    al.'s / EmPO's ``load_intensity``: whitespace split, ``dict[word] = score`` line by line, words as written)."""
    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"NRC Emotion Intensity lexicon not found at {p} (set resources.intensity_lexicon)")
    out: dict[str, float] = {}
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("\t") if how == "max" else line.split()
            if lineno == 1 and parts and parts[0].lower() == "word":
                continue
            if not line.strip():
                continue
            if len(parts) < 3:
                raise DataError(f"expected 'word<TAB>emotion<TAB>score', got {len(parts)} field(s)", file=str(p), line=lineno)
            try:
                score = float(parts[2])
            except ValueError:
                raise DataError("non-numeric score", file=str(p), line=lineno, field="emotion-intensity-score") from None
            if how == "last-line":
                out[parts[0]] = score
                continue
            w = parts[0].lower()
            out[w] = max(out.get(w, 0.0), score)
    return out


def nidf_from_df(df: dict[str, int]) -> dict[str, float]:
    """word → NIDF (See et al. 2019): ``(log max_df − log df) / (log max_df − log min_df)``."""
    lo, hi = math.log(min(df.values())), math.log(max(df.values()))
    return {w: (hi - math.log(c)) / (hi - lo) for w, c in df.items()}


def _ed_df_table(ed_dir: Path) -> dict[str, Any]:
    """Document frequencies of NLTK tokens over ED train+valid utterances (each utterance one document).

    Cached as JSON under ``cache_dir()/metrics/`` keyed by the folder path and file sizes.
    """
    from empathkit.data.ed import decode_text, parse_rows, _iter_lines
    from empathkit.paths import cache_dir

    files = [ed_dir / "train.csv", ed_dir / "valid.csv"]
    for f in files:
        if not f.is_file():
            raise ResourceMissing(f"{f} not found: the NIDF table needs ED train.csv + valid.csv (set resources.ed_dir)")
    key = "-".join(str(f.stat().st_size) for f in files)
    cache = cache_dir() / "metrics" / f"ed-df-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    df: Counter = Counter()
    n_docs = 0
    for f in files:
        for _, row in parse_rows(_iter_lines(f.read_bytes(), str(f)), str(f)):
            toks = set(nltk_tokenize(decode_text(row["utterance"])))
            df.update(toks)
            n_docs += 1
    table = {"n_docs": n_docs, "df": dict(df), "source": [str(f) for f in files]}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(table), encoding="utf-8")
    tmp.replace(cache)
    return table


@functools.lru_cache(maxsize=2)
def _nidf_table(ed_dir: str) -> dict[str, float]:
    """word → NIDF (See et al. 2019): ``(log max_df − log df) / (log max_df − log min_df)``, as in Lee et al. 2024."""
    return nidf_from_df(_ed_df_table(Path(ed_dir))["df"])


@functools.lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@functools.lru_cache(maxsize=2)
def _word_vectors(path: str) -> tuple[dict[str, int], Any]:
    """A GloVe / word2vec text file → (word → row, matrix)."""
    import numpy as np

    p = Path(path)
    if not p.is_file():
        raise ResourceMissing(f"word vectors not found at {p}")
    vocab, rows = {}, []
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if lineno == 1 and len(parts) == 2:  # word2vec header
                continue
            try:
                rows.append([float(x) for x in parts[1:]])
            except ValueError:
                raise DataError("non-numeric vector component", file=str(p), line=lineno) from None
            vocab[parts[0]] = len(vocab)
    return vocab, np.asarray(rows, dtype="float32")


class Resources:
    """What metrics ask for. Cheap to create; loads lazily; heavy objects are shared per process."""

    def __init__(self, config: ResourceConfig | dict | None = None, *, lm=None):
        """``lm``: an already loaded ``(model, tokenizer)`` to use instead of loading ``config.lm`` (e.g. a trained
        generator, or a test's tiny model)."""
        self._lm = lm
        if isinstance(config, dict) or config is None:
            from empathkit.config import validate

            config = validate(ResourceConfig, config or {}, "resources")  # type: ignore[assignment]
        self.config: ResourceConfig = config  # type: ignore[assignment]

    # paths ------------------------------------------------------------------------------------------------
    def data_root(self) -> Path:
        from empathkit.paths import data_root

        return data_root(self.config.data_root)  # type: ignore[return-value]

    def vad_path(self) -> Path:
        if self.config.vad_lexicon:
            return Path(self.config.vad_lexicon)
        return self.data_root() / "nrc_vad" / "v2.1" / "NRC-VAD-Lexicon-v2.1.txt"

    def intensity_path(self) -> Path:
        if self.config.intensity_lexicon:
            return Path(self.config.intensity_lexicon)
        return self.data_root() / "nrc_emotion_intensity" / "NRC-Emotion-Intensity-Lexicon-v1.txt"

    def ed_path(self) -> Path:
        if self.config.ed_dir:
            return Path(self.config.ed_dir)
        return self.data_root() / "empathetic_dialogues" / "empatheticdialogues"

    # resources --------------------------------------------------------------------------------------------
    def encoder(self):
        return _sentence_encoder(self.config.encoder, self.config.device)

    def encoder_path(self) -> str:
        from empathkit.models.backbones import encoder_path

        return encoder_path(self.config.encoder)

    def lm(self):
        """``(model, tokenizer)`` of the configured causal LM (shared, eval mode)."""
        return self._lm if self._lm is not None else _causal_lm(self.config.lm, self.lm_dtype())

    def lm_dtype(self) -> str:
        """The dtype the configured LM runs in (``auto`` resolved on this machine); recorded in metric info."""
        if self._lm is not None:
            return str(next(self._lm[0].parameters()).dtype).replace("torch.", "")
        from empathkit.models.backbones import resolve_dtype

        return resolve_dtype(self.config.lm_dtype)

    def vad_lexicon(self) -> dict[str, tuple[float, float, float]]:
        from empathkit.data.emotions import load_vad_lexicon

        return load_vad_lexicon(str(self.vad_path()))

    def intensity_lexicon(self, how: str = "max") -> dict[str, float]:
        return _intensity_lexicon(str(self.intensity_path()), how)

    def nidf_table(self) -> dict[str, float]:
        return _nidf_table(str(self.ed_path()))

    def vader(self):
        return _vader()

    def word_vectors(self):
        if not self.config.embeddings:
            raise ResourceMissing("no word-vector file configured (resources.embeddings)")
        return _word_vectors(self.config.embeddings)

    def classifier(self, name: str):
        """An auxiliary classifier from ``empathkit.classifiers`` (trained by ``empathkit classifiers train``)."""
        try:
            import empathkit.classifiers as clf
        except ImportError:
            raise ResourceMissing("empathkit.classifiers is not available") from None
        loader = getattr(clf, "load_classifier", None)
        if loader is None:
            raise ResourceMissing("empathkit.classifiers has no load_classifier()")
        src = self.config.classifiers.get(name)
        return loader(name, src) if src else loader(name)


def as_resources(r: Resources | ResourceConfig | dict | None) -> Resources:
    return r if isinstance(r, Resources) else Resources(r)


def batched(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]
