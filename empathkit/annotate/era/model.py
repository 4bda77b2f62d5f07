"""ERA, ReflectDiffu's Emotion Reason Annotator (App. C.1): BERT token encoder → attention-based semantic
composition (Eq. 14–15) → CRF over words (Eq. 16, pytorch-crf).

- Words in, words out: ``tag(words)`` takes pre-tokenised words (one list per turn) and returns one tag per word.
  The encoder sees word pieces; each word is represented by its **first sub-word** position.
- CRF packing: pytorch-crf requires ``mask[:, 0]`` on and a contiguous mask. The first-sub-word emissions of each
  sequence are therefore packed to the left (slot j = the j-th word that has a position) with mask = 1 on the first
  n_words slots; training and decoding use the same packing (:func:`pack_first_subwords`). The unofficial
  reproduction put the mask on sub-word positions with the leading [CLS] off, which pytorch-crf rejects.
- Words beyond ``max_length`` word pieces (truncation) and words the tokenizer turns into nothing are not encoded:
  they get ``<noem>`` and ``mask = False`` in :meth:`ERA.reason_states`.
- ``reason_states(words)`` → ``(h̃ [B, W, dim], mask [B, W])`` per input word: the composition output at the word's
  first sub-word, which the ReflectDiffu encoder attends to (Eq. 3). It follows the current autograd mode and
  train/eval mode (wrap in ``torch.no_grad()`` for a frozen ERA).

Saved folder: ``config.json`` (tags, max_length, version, encoder it started from), ``encoder/`` (transformers
safetensors + tokenizer), ``head.safetensors`` (composition, emission and CRF parameters). No pickles.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from empathkit.errors import ResourceMissing

TAGS = ("<noem>", "<em>")  # tag ids 0, 1
ERA_VERSION = "1"


@dataclass
class ERAConfig:
    encoder: str = "minilm-l6"  # what the encoder was initialised from (name / path); the saved copy is encoder/
    max_length: int = 128  # word pieces per sequence, special tokens included
    tags: tuple[str, ...] = TAGS
    version: str = ERA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # training summary (annotator trained on, scores, …)


class SemanticComposition(nn.Module):
    """Eq. 14–15: α_ik = softmax_k(Attention(h_i, h_k)) over the tokens of the turn, h̃_i = Σ_k α_ik h_k.

    Attention(h_i, h_k) is a scaled dot product of learned query / key projections (the paper leaves the score
    function open); values are the encoder states themselves, as Eq. 15 writes.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def forward(self, h: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = torch.matmul(self.query(h), self.key(h).transpose(1, 2)) * self.scale  # [B, T, T]
        scores = scores.masked_fill(~attention_mask.bool()[:, None, :], torch.finfo(scores.dtype).min)
        return torch.matmul(scores.softmax(-1), h)


def first_subword_positions(word_ids: Sequence[int | None], n_words: int) -> list[int]:
    """Position of the first word piece of each word (``-1`` when the word has none: truncated or empty).

    ``word_ids`` is a fast tokenizer's ``BatchEncoding.word_ids(b)``: ``None`` for special tokens / padding.
    """
    pos = [-1] * n_words
    for t, w in enumerate(word_ids):
        if w is not None and w < n_words and pos[w] < 0:
            pos[w] = t
    return pos


def pack_first_subwords(hidden: torch.Tensor, positions: Sequence[Sequence[int]]
                        ) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Gather first-sub-word states and pack them to the left (hand-written: no library packs for pytorch-crf).

    Returns ``packed [B, S, D]``, ``mask [B, S]`` (contiguous, starting at slot 0; at least one slot is on per row
    so pytorch-crf accepts rows without words — their dummy slot is ignored) and ``slots``: for each row, the
    word index of each packed slot.
    """
    slots = [[w for w, p in enumerate(ps) if p >= 0] for ps in positions]
    S = max([len(s) for s in slots] + [1])
    B, _, D = hidden.shape
    index = torch.zeros(B, S, dtype=torch.long, device=hidden.device)
    mask = torch.zeros(B, S, dtype=torch.bool, device=hidden.device)
    for b, s in enumerate(slots):
        if s:
            index[b, :len(s)] = torch.tensor([positions[b][w] for w in s], device=hidden.device)
            mask[b, :len(s)] = True
        mask[b, 0] = True  # rows without words: a dummy slot at the [CLS] position
    packed = hidden.gather(1, index[:, :, None].expand(B, S, D))
    return packed, mask, slots


class ERA(nn.Module):
    def __init__(self, encoder: nn.Module, tokenizer, config: ERAConfig | None = None):
        super().__init__()
        from torchcrf import CRF

        self.config = config or ERAConfig()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.dim = int(encoder.config.hidden_size)
        self.composition = SemanticComposition(self.dim)
        self.emission = nn.Linear(self.dim, len(self.config.tags))
        self.crf = CRF(len(self.config.tags), batch_first=True)

    # ---------------------------------------------------------------------------------------------- building
    @classmethod
    def new(cls, encoder: str = "minilm-l6", max_length: int = 128, seed: int = 0) -> "ERA":
        """A fresh ERA on a pretrained encoder (name such as ``minilm-l6``, a folder or a Hub id); random head."""
        from transformers import AutoModel, AutoTokenizer

        from empathkit.models.backbones import encoder_path

        path = encoder_path(encoder)
        torch.manual_seed(seed)
        try:
            enc = AutoModel.from_pretrained(path, trust_remote_code=False)
            tok = AutoTokenizer.from_pretrained(path, use_fast=True)
        except OSError as e:
            raise ResourceMissing(f"could not load encoder {encoder!r} ({path}): {str(e).splitlines()[0]}") from None
        return cls(enc, tok, ERAConfig(encoder=encoder, max_length=max_length))

    @property
    def annotator(self) -> str:
        return f"era@{self.config.version}"

    # ---------------------------------------------------------------------------------------------- forward
    def _encode(self, words: Sequence[Sequence[str]]):
        device = next(self.parameters()).device
        enc = self.tokenizer([list(w) for w in words], is_split_into_words=True, truncation=True,
                             max_length=self.config.max_length, padding=True, return_tensors="pt")
        positions = [first_subword_positions(enc.word_ids(b), len(w)) for b, w in enumerate(words)]
        inputs = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        h = self.encoder(**inputs).last_hidden_state
        h_tilde = self.composition(h, inputs["attention_mask"])
        return h_tilde, positions

    def emissions(self, words: Sequence[Sequence[str]]):
        """``(emissions [B, S, n_tags], mask [B, S], slots, packed h̃ [B, S, dim])`` over packed first sub-words."""
        h_tilde, positions = self._encode(words)
        packed, mask, slots = pack_first_subwords(h_tilde, positions)
        return self.emission(packed), mask, slots, packed

    def loss(self, words: Sequence[Sequence[str]], tags: Sequence[Sequence[str]]) -> torch.Tensor:
        """Mean CRF negative log-likelihood of the gold tags (one per word) over the batch."""
        em, mask, slots, _ = self.emissions(words)
        tag_id = {t: i for i, t in enumerate(self.config.tags)}
        gold = torch.zeros(mask.shape, dtype=torch.long, device=em.device)
        for b, s in enumerate(slots):
            if s:
                gold[b, :len(s)] = torch.tensor([tag_id[tags[b][w]] for w in s], device=em.device)
        return -self.crf(em, gold, mask=mask, reduction="mean")

    @torch.no_grad()
    def tag(self, words: Sequence[Sequence[str]], batch_size: int = 32) -> list[list[str]]:
        """Viterbi tags, one per input word (``<noem>`` for words the encoder did not see)."""
        was = self.training
        self.eval()
        out: list[list[str]] = []
        try:
            for i in range(0, len(words), batch_size):
                chunk = words[i:i + batch_size]
                em, mask, slots, _ = self.emissions(chunk)
                best = self.crf.decode(em, mask=mask)
                for b, w in enumerate(chunk):
                    row = [self.config.tags[0]] * len(w)
                    for j, word_idx in enumerate(slots[b]):
                        row[word_idx] = self.config.tags[best[b][j]]
                    out.append(row)
        finally:
            self.train(was)
        return out

    def reason_states(self, words: Sequence[Sequence[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        """h̃ per input word: ``[B, W, dim]`` (W = the longest input) and a bool mask ``[B, W]`` (False for padding
        and for words the encoder did not see)."""
        _, _, slots, packed = self.emissions(words)
        B = len(words)
        W = max([len(w) for w in words] + [1])
        out = packed.new_zeros(B, W, self.dim)
        wmask = torch.zeros(B, W, dtype=torch.bool, device=packed.device)
        for b, s in enumerate(slots):
            if s:
                idx = torch.tensor(s, device=packed.device)
                out[b, idx] = packed[b, :len(s)]
                wmask[b, idx] = True
        return out, wmask

    # ---------------------------------------------------------------------------------------------- saving
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(p / "encoder", safe_serialization=True)
        self.tokenizer.save_pretrained(p / "encoder")
        head = {f"composition.{k}": v for k, v in self.composition.state_dict().items()}
        head |= {f"emission.{k}": v for k, v in self.emission.state_dict().items()}
        head |= {f"crf.{k}": v for k, v in self.crf.state_dict().items()}
        save_file({k: v.detach().contiguous().cpu() for k, v in head.items()}, str(p / "head.safetensors"))
        cfg = asdict(self.config)
        cfg["tags"] = list(cfg["tags"])
        (p / "config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        return p

    @classmethod
    def load(cls, path: str | Path) -> "ERA":
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        p = Path(path)
        if not (p / "config.json").is_file() or not (p / "head.safetensors").is_file():
            raise ResourceMissing(f"no trained ERA at {p}: run 'empathkit annotate --train-era' (or pass a folder "
                                  "holding config.json, head.safetensors and encoder/)")
        raw = json.loads((p / "config.json").read_text(encoding="utf-8"))
        known = set(ERAConfig.__dataclass_fields__)
        cfg = ERAConfig(**{k: (tuple(v) if k == "tags" else v) for k, v in raw.items() if k in known})
        enc = AutoModel.from_pretrained(p / "encoder", trust_remote_code=False)
        tok = AutoTokenizer.from_pretrained(p / "encoder", use_fast=True)
        era = cls(enc, tok, cfg)
        head = load_file(str(p / "head.safetensors"))
        for name, mod in (("composition", era.composition), ("emission", era.emission), ("crf", era.crf)):
            mod.load_state_dict({k.split(".", 1)[1]: v for k, v in head.items() if k.startswith(name + ".")})
        era.eval()
        return era


def tiny_random_era(seed: int = 0, hidden: int = 32, layers: int = 2) -> ERA:
    """A randomly initialised 2-layer BERT ERA with MiniLM's real word-piece tokenizer (unit tests)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from empathkit.models.backbones import encoder_path

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(encoder_path("minilm-l6"), use_fast=True)
    enc = BertModel(BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                               num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128),
                    add_pooling_layer=False)
    return ERA(enc, tok, ERAConfig(encoder="tiny-random-bert", max_length=64))
