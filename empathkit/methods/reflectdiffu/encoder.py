"""The emotion-contagion encoder (Sec. 3.2, Eq. 1-3).

E^C = E^W + E^P + E^R: word embedding (scaled by sqrt(d)), sinusoidal positions, and the reason embedding of each
token's ``<em>/<noem>`` tag (the listener's turns are always ``<noem>``; the prepended CTX token has its own row).
A transformer encoder gives H; Q = mean-pool(Attention(H, h~)) with H as the queries and the ERA's reasoning states
h~ (projected to the model size) as keys and values, pooled over the context's real tokens.
``use_era=False`` removes E^R, the h~ projection and the attention: Q = mean-pool(H).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from empathkit.methods.reflectdiffu.vocab import PAD_ID

REASON_PAD, REASON_NOEM, REASON_EM, REASON_CTX = range(4)


def sinusoid(n: int, d: int) -> torch.Tensor:
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of the positions where ``mask`` (B, L) is True."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


class TokenEmbedding(nn.Module):
    """E^W + E^P (+ E^R when ``reasons``); shared by the encoder and the decoder input."""

    def __init__(self, vocab_size: int, d: int, max_len: int = 1024, reasons: bool = True,
                 init: torch.Tensor | None = None, dropout: float = 0.1):
        super().__init__()
        self.d = d
        self.word = nn.Embedding(vocab_size, d, padding_idx=PAD_ID)
        with torch.no_grad():
            if init is not None:
                self.word.weight.copy_(init)
            else:  # N(0, 1/d), as vocab.init_embeddings: the table is tied with the output layer, and torch's N(0, 1)
                nn.init.normal_(self.word.weight, std=d ** -0.5)  # gives logits of std ~sqrt(d) (initial loss >> ln V)
                self.word.weight[PAD_ID] = 0.0
        self.reason = nn.Embedding(4, d, padding_idx=REASON_PAD) if reasons else None
        self.register_buffer("pos", sinusoid(max_len, d), persistent=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: torch.Tensor, reason_ids: torch.Tensor | None = None, offset: int = 0) -> torch.Tensor:
        x = self.word(ids) * math.sqrt(self.d) + self.pos[offset:offset + ids.shape[1]]
        if self.reason is not None and reason_ids is not None:
            x = x + self.reason(reason_ids)
        return self.drop(x)


class ContagionEncoder(nn.Module):
    """``forward(ids, reason_ids, h_tilde, h_mask) -> (H, Q, key_padding_mask)``; position 0 is CTX."""

    def __init__(self, emb: TokenEmbedding, d: int, heads: int, layers: int, ff: int, dropout: float,
                 era_dim: int | None):
        super().__init__()
        self.emb = emb
        layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        self.use_era = era_dim is not None
        if self.use_era:
            self.h_proj = nn.Linear(era_dim, d)
            self.reason_attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)

    def forward(self, ids, reason_ids=None, h_tilde=None, h_mask=None):
        pad = ids.eq(PAD_ID)
        H = self.enc(self.emb(ids, reason_ids if self.use_era else None), src_key_padding_mask=pad)
        if self.use_era and h_tilde is not None and h_mask is not None and h_mask.any():
            kv = self.h_proj(h_tilde)
            no_key = ~h_mask.any(1)  # a context without reason states attends to a zero state
            hm = h_mask.clone()
            hm[no_key, 0] = True
            kv = kv.masked_fill(~hm.unsqueeze(-1) | no_key[:, None, None], 0.0)
            A, _ = self.reason_attn(H, kv, kv, key_padding_mask=~hm, need_weights=False)
            Q = masked_mean(A, ~pad)
        else:
            Q = masked_mean(H, ~pad)
        return H, Q, pad
