"""Vocabulary and word embeddings (Sec. 4.3).

- ``words`` (default): MoEL-style lower-cased NLTK word tokens, the ``vocab_size`` most frequent training words;
  other words become UNK on the input side and are *copied* by the pointer-generator when they occur in the context
  (the extended vocabulary of See et al.: each example's out-of-vocabulary context words get ids ``V + k``).
- ``minilm-wordpiece``: MiniLM's WordPiece vocabulary (no OOV at all; ``##`` pieces join without a space).

Embedding initialisation (:func:`init_embeddings`): ``random``, ``minilm`` (mean of MiniLM's input embeddings over
each word's pieces, PCA-reduced to ``emb_dim`` when smaller) or ``glove`` (a GloVe text file; 300-d in the paper).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

PAD, UNK, SOS, EOS, CTX = "<pad>", "<unk>", "<sos>", "<eos>", "<ctx>"
SPECIALS = (PAD, UNK, SOS, EOS, CTX)
PAD_ID, UNK_ID, SOS_ID, EOS_ID, CTX_ID = range(5)
NO_SPACE_BEFORE = {".", ",", "!", "?", ";", ":", "'s", "n't", "'m", "'re", "'ve", "'ll", "'d", ")", "%"}


def word_tokens(text: str) -> list[str]:
    """Lower-cased NLTK word tokens (MoEL's preprocessing)."""
    from nltk.tokenize import word_tokenize

    try:
        return [w.lower() for w in word_tokenize(text)]
    except LookupError:  # punkt data missing: Treebank word tokens without sentence splitting
        from nltk.tokenize import TreebankWordTokenizer

        return [w.lower() for w in TreebankWordTokenizer().tokenize(text)]


def _minilm_tokenizer():
    from transformers import AutoTokenizer

    from empathkit.models.backbones import encoder_path

    return AutoTokenizer.from_pretrained(encoder_path("minilm-l6"))


class Vocab:
    """Token strings ↔ ids, the tokenizer mode and detokenisation."""

    def __init__(self, tokens: Sequence[str], mode: str = "words"):
        self.tokens = list(tokens)
        if tuple(self.tokens[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        self.mode = mode
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self._wp = None

    def __len__(self) -> int:
        return len(self.tokens)

    # -- tokenisation ------------------------------------------------------------------------------------------------
    @property
    def wordpiece(self):
        if self._wp is None:
            self._wp = _minilm_tokenizer()
        return self._wp

    def words(self, text: str) -> list[str]:
        """The word-level tokens of a text (the unit reason tags and ERA states are given for)."""
        return word_tokens(text)

    def pieces(self, words: Sequence[str]) -> tuple[list[str], list[int]]:
        """Model tokens of a word list and, for each, the index of the word it came from."""
        if self.mode == "words":
            return list(words), list(range(len(words)))
        out, owner = [], []
        for i, w in enumerate(words):
            ps = self.wordpiece.tokenize(w) or [UNK]
            out += ps
            owner += [i] * len(ps)
        return out, owner

    def ids(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(t, UNK_ID) for t in tokens]

    def detok(self, tokens: Sequence[str]) -> str:
        """Text of generated tokens; appending a token only ever appends text (streaming relies on it)."""
        text = ""
        for t in tokens:
            if self.mode != "words" and t.startswith("##"):
                text += t[2:]
            elif not text or t in NO_SPACE_BEFORE:
                text += t
            else:
                text += " " + t
        return text

    # -- persistence ---------------------------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        p = Path(folder) / "vocab.json"
        p.write_text(json.dumps({"mode": self.mode, "tokens": self.tokens}, ensure_ascii=False), encoding="utf-8")
        return p

    @classmethod
    def load(cls, folder: str | Path) -> Vocab:
        d = json.loads((Path(folder) / "vocab.json").read_text(encoding="utf-8"))
        return cls(d["tokens"], d["mode"])


def build_vocab(texts: Iterable[Sequence[str]], mode: str = "words", size: int = 8000, min_freq: int = 1) -> Vocab:
    """A vocabulary from word-token lists (``words``) or MiniLM's WordPiece list (``minilm-wordpiece``)."""
    if mode == "minilm-wordpiece":
        tok = _minilm_tokenizer()
        own = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        return Vocab(list(SPECIALS) + [t for t, _ in own if t not in SPECIALS], mode)
    counts = Counter(w for ws in texts for w in ws)
    kept = [w for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_freq and w not in SPECIALS]
    return Vocab(list(SPECIALS) + kept[:max(0, size - len(SPECIALS))], mode)


def init_embeddings(vocab: Vocab, dim: int, how: str = "random", glove_path: str | None = None,
                    seed: int = 0) -> torch.Tensor:
    """An initial (V, dim) embedding table. Rows without a pretrained vector keep their random init."""
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(len(vocab), dim, generator=g) * dim ** -0.5
    table[PAD_ID] = 0.0
    if how == "random":
        return table
    if how == "glove":
        return _glove(vocab, table, glove_path)
    if how == "minilm":
        return _minilm(vocab, table)
    raise ValueError(f"unknown embedding_init {how!r}")


def _glove(vocab: Vocab, table: torch.Tensor, path: str | None) -> torch.Tensor:
    from empathkit.errors import DataError, ResourceMissing

    p = Path(path or "")
    if not p.is_file():
        raise ResourceMissing(f"GloVe file not found: {p}")
    dim = table.shape[1]
    with p.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip().split(" ")
            if parts[0] in vocab.index:
                if len(parts) - 1 != dim:
                    raise DataError(f"{len(parts) - 1}-d vector, expected emb_dim={dim}", file=str(p), line=lineno)
                table[vocab.index[parts[0]]] = torch.tensor([float(x) for x in parts[1:]])
    return table


def _minilm(vocab: Vocab, table: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModel

    from empathkit.models.backbones import encoder_path

    tok = _minilm_tokenizer()
    emb = AutoModel.from_pretrained(encoder_path("minilm-l6")).get_input_embeddings().weight.detach()
    rows = []
    for t in vocab.tokens[len(SPECIALS):]:
        ids = tok.convert_tokens_to_ids([t]) if vocab.mode != "words" else tok(t, add_special_tokens=False)["input_ids"]
        rows.append(emb[ids].mean(0) if ids else emb.mean(0))
    m = torch.stack(rows)
    dim = table.shape[1]
    if dim < m.shape[1]:  # PCA to emb_dim, rescaled to the random init's scale
        mc = m - m.mean(0)
        _, _, v = torch.pca_lowrank(mc, q=dim, center=False)
        m = mc @ v[:, :dim]
    elif dim > m.shape[1]:
        m = torch.cat([m, torch.zeros(len(m), dim - m.shape[1])], 1)
    m = m / (m.std() + 1e-8) * dim ** -0.5
    table[len(SPECIALS):] = m
    return table
