"""The shared classifier object: a sentence encoder (MiniLM by default) + a linear head, saved as safetensors.

One class serves every kind (single-label emotion / intent / EPITOME level, multi-label GoEmotions):

- ``predict_proba(inputs)`` → ``np.ndarray [n, n_labels]`` (softmax for single-label, sigmoid for multi-label);
- ``predict(inputs)`` → ``[(top label, prob), …]``;
- ``predict_labels(inputs, threshold)`` → ``[[labels with prob ≥ threshold], …]`` (multi-label kinds).

``inputs`` are strings, or ``(seeker post, response)`` pairs for pair kinds (EPITOME). Encoding is batched; the
sentence-transformers encoder sorts by length so each batch is padded only to its own longest text.

Layout of a trained classifier folder (``cache_dir()/classifiers/<kind>/``): ``config.json`` (labels, input kind,
encoder), ``head.safetensors`` (``weight [n_labels, n_features]``, ``bias [n_labels]``), optionally ``encoder/``
(a fine-tuned sentence-transformers folder, safetensors), ``card.md`` and ``metrics.json``.

Other folder layouts register a loader here (:func:`register_folder_format`): ``ensemble.py`` registers
``ensemble.json``, so :meth:`TextClassifier.load` also loads a seed ensemble while this module, the bottom of the
classifier modules, imports none of the modules built on it (the package ``__init__`` imports ``ensemble``).
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from empathkit.errors import DataError, ResourceMissing

log = logging.getLogger(__name__)

Input = "str | tuple[str, str]"


@dataclass
class ClassifierConfig:
    kind: str
    labels: list[str]
    multi_label: bool = False
    input: str = "text"  # "text" or "pair" (seeker post, response)
    encoder: str = "minilm-l6"  # encoder name (resolved by backbones.encoder_path) or "encoder" = the folder's own
    max_seq_length: int = 128
    lowercase: bool = False  # lower-case inputs before encoding (the intent data is lower-cased)
    threshold: float = 0.5  # default multi-label threshold for predict_labels
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> "ClassifierConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------------------------------------------------------
# Shared frozen encoder + a per-process embedding memo (several classifiers score the same responses in one
# evaluation: emotion, GoEmotions, 3 × EPITOME all reuse one embedding per text).


@functools.lru_cache(maxsize=4)
def _load_encoder(name_or_path: str, max_seq_length: int):
    from sentence_transformers import SentenceTransformer

    from empathkit.models.backbones import encoder_path

    path = encoder_path(name_or_path)
    try:
        model = SentenceTransformer(path, device="cpu", trust_remote_code=False)
    except OSError as e:
        raise ResourceMissing(f"could not load sentence encoder {name_or_path!r} ({path}): {str(e).splitlines()[0]}") from None
    model.max_seq_length = max_seq_length
    model.eval()
    return model


def embedding_dim(model) -> int:
    """Output width of a SentenceTransformer (the method was renamed in sentence-transformers 5.x)."""
    fn = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(fn())


class Encoder:
    """A sentence-transformers encoder with an embedding memo (text → vector) bounded to ``memo_size`` entries."""

    def __init__(self, model, memo_size: int = 200_000):
        self.model = model
        self.memo: dict[str, np.ndarray] = {}
        self.memo_size = memo_size

    @property
    def dim(self) -> int:
        return embedding_dim(self.model)

    def encode(self, texts: Sequence[str], batch_size: int = 64, show_progress: bool | str = False) -> np.ndarray:
        """``show_progress``: False, True or a description — one labelled bar counting texts (sentence-transformers'
        own unlabelled "Batches" bar stays off)."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if todo:
            vecs = self._encode_new(todo, batch_size, show_progress)
            if len(self.memo) + len(todo) > self.memo_size:
                self.memo.clear()
            for t, v in zip(todo, vecs):
                self.memo[t] = v.astype(np.float32)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if any(t not in self.memo for t in texts):  # memo was cleared mid-way: encode the rest directly
            return np.stack([self.memo[t] if t in self.memo else self.model.encode([t], convert_to_numpy=True)[0]
                             for t in texts]).astype(np.float32)
        return np.stack([self.memo[t] for t in texts])

    def _encode_new(self, todo: list[str], batch_size: int, show_progress: bool | str) -> np.ndarray:
        if not show_progress:
            return self.model.encode(todo, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False)
        from tqdm.auto import tqdm

        desc = show_progress if isinstance(show_progress, str) else "embedding"
        chunk = max(batch_size, 1024)
        parts = []
        with tqdm(total=len(todo), desc=desc, unit="text") as bar:
            for i in range(0, len(todo), chunk):
                parts.append(self.model.encode(todo[i:i + chunk], batch_size=batch_size, convert_to_numpy=True,
                                               show_progress_bar=False))
                bar.update(len(todo[i:i + chunk]))
        return np.concatenate(parts)


@functools.lru_cache(maxsize=4)
def shared_encoder(name_or_path: str = "minilm-l6", max_seq_length: int = 128) -> Encoder:
    return Encoder(_load_encoder(name_or_path, max_seq_length))


def pair_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Features of a (seeker post, response) pair: ``[u, v, u*v, |u-v|]`` (the InferSent/SBERT pair recipe)."""
    return np.concatenate([u, v, u * v, np.abs(u - v)], axis=1)


def _check_inputs(inputs: Sequence, pair: bool) -> None:
    for i, x in enumerate(inputs):
        if pair:
            if not (isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(s, str) for s in x)):
                raise DataError(f"input {i}: expected a (seeker post, response) pair of strings, got {type(x).__name__}")
        elif not isinstance(x, str):
            raise DataError(f"input {i}: expected a string, got {type(x).__name__}")


def write_config(folder: Path, config: ClassifierConfig) -> None:
    """``config.json`` of a classifier folder (single or ensemble)."""
    (folder / "config.json").write_text(json.dumps(asdict(config), indent=2), encoding="utf-8")


# marker file of a folder layout → its loader (``ensemble.json`` → ``EnsembleClassifier.load``, see ensemble.py)
_FOLDER_FORMATS: dict[str, Callable[[Path], Any]] = {}


def register_folder_format(marker: str, loader: Callable[[Path], Any]) -> None:
    """Let :meth:`TextClassifier.load` and :func:`is_classifier_folder` handle folders holding ``marker`` (a file
    name) with ``loader(folder)``. Modules built on this one register themselves, so it never imports them."""
    _FOLDER_FORMATS[marker] = loader


def is_classifier_folder(p: str | Path) -> bool:
    """A trained empathkit classifier folder: a single classifier (``head.safetensors``) or a registered layout
    (an ensemble: ``ensemble.json``)."""
    p = Path(p)
    return (p / "config.json").is_file() and any((p / m).is_file() for m in ("head.safetensors", *_FOLDER_FORMATS))


class LabelPredictions:
    """``predict`` / ``predict_labels`` on top of a class's ``predict_proba``, ``labels`` and ``config``."""

    labels: list[str]
    config: ClassifierConfig

    def predict_proba(self, inputs: Sequence, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        raise NotImplementedError

    def predict(self, inputs: Sequence, batch_size: int = 64, show_progress: bool = False) -> list[tuple[str, float]]:
        """Top-1 ``(label, probability)`` per input."""
        p = self.predict_proba(inputs, batch_size, show_progress)
        idx = p.argmax(axis=1) if len(p) else []
        return [(self.labels[j], float(p[i, j])) for i, j in enumerate(idx)]

    def predict_labels(self, inputs: Sequence, threshold: float | None = None, fallback: str | None = None,
                       batch_size: int = 64) -> list[list[str]]:
        """Every label with probability ≥ ``threshold``; ``fallback`` (e.g. ``"neutral"``) when none passes."""
        thr = self.config.threshold if threshold is None else threshold
        p = self.predict_proba(inputs, batch_size)
        out = []
        for row in p:
            labs = [self.labels[j] for j in np.flatnonzero(row >= thr)]
            out.append(labs or ([fallback] if fallback else []))
        return out


class TextClassifier(LabelPredictions):
    """Encoder + linear head. Build with :meth:`load` (a trained folder) or directly from arrays (training/tests)."""

    def __init__(self, config: ClassifierConfig, weight: np.ndarray, bias: np.ndarray, encoder: Encoder | None = None,
                 path: Path | None = None, hidden: tuple[np.ndarray, np.ndarray] | None = None):
        self.config = config
        self.weight = np.asarray(weight, dtype=np.float32)
        self.bias = np.asarray(bias, dtype=np.float32)
        # optional hidden layer (an MLP head: relu(x @ hidden_w.T + hidden_b) feeds the output layer)
        self.hidden = None if hidden is None else (np.asarray(hidden[0], dtype=np.float32),
                                                   np.asarray(hidden[1], dtype=np.float32))
        if self.weight.shape[0] != len(config.labels) or self.bias.shape != (len(config.labels),):
            raise DataError(f"head shape {self.weight.shape}/{self.bias.shape} does not match {len(config.labels)} labels")
        self._encoder = encoder
        self.path = path

    # -- properties -------------------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            if self.config.encoder == "encoder":
                if self.path is None:
                    raise ResourceMissing(f"classifier {self.kind}: fine-tuned encoder folder unknown")
                self._encoder = Encoder(_load_encoder(str(self.path / "encoder"), self.config.max_seq_length))
            else:
                self._encoder = shared_encoder(self.config.encoder, self.config.max_seq_length)
        return self._encoder

    # -- features and prediction ------------------------------------------------------------------------------
    def _prep(self, s: str) -> str:
        s = " ".join(s.split())
        return s.lower() if self.config.lowercase else s

    def features(self, inputs: Sequence, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        pair = self.config.input == "pair"
        _check_inputs(inputs, pair)
        if pair:
            seekers = [self._prep(a) for a, _ in inputs]
            responses = [self._prep(b) for _, b in inputs]
            emb = self.encoder.encode(seekers + responses, batch_size, show_progress)
            return pair_features(emb[: len(inputs)], emb[len(inputs):])
        return self.encoder.encode([self._prep(s) for s in inputs], batch_size, show_progress)

    def proba_from_features(self, feats: np.ndarray) -> np.ndarray:
        if self.hidden is not None:
            feats = np.maximum(feats @ self.hidden[0].T + self.hidden[1], 0.0)
        logits = feats @ self.weight.T + self.bias
        if self.config.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def predict_proba(self, inputs: Sequence, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        if len(inputs) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.proba_from_features(self.features(inputs, batch_size, show_progress))

    # -- persistence --------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        tensors = {"weight": self.weight, "bias": self.bias}
        if self.hidden is not None:
            tensors.update({"hidden.weight": self.hidden[0], "hidden.bias": self.hidden[1]})
        # contiguous copies: safetensors writes the raw buffer, so a transposed view would be saved scrambled
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(p / "head.safetensors"))
        write_config(p, self.config)
        self.path = p
        return p

    @classmethod
    def load(cls, path: str | Path) -> "TextClassifier":
        """A trained folder; an ensemble folder (``ensemble.json``) loads as an ``EnsembleClassifier`` (any folder
        layout registered with :func:`register_folder_format` loads with its own loader)."""
        from safetensors.numpy import load_file

        p = Path(path)
        for marker, loader in _FOLDER_FORMATS.items():
            if (p / marker).is_file():
                return loader(p)
        cfg_file, head_file = p / "config.json", p / "head.safetensors"
        if not cfg_file.is_file() or not head_file.is_file():
            raise ResourceMissing(f"{p}: not a trained classifier folder (needs config.json and head.safetensors)")
        try:
            cfg = ClassifierConfig.from_json(json.loads(cfg_file.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError) as e:
            raise DataError(f"invalid classifier config ({e})", file=str(cfg_file)) from None
        head = load_file(str(head_file))
        hidden = (head["hidden.weight"], head["hidden.bias"]) if "hidden.weight" in head else None
        return cls(cfg, head["weight"], head["bias"], path=p, hidden=hidden)

    def __repr__(self) -> str:
        return f"TextClassifier(kind={self.kind!r}, labels={len(self.labels)}, input={self.config.input!r})"
