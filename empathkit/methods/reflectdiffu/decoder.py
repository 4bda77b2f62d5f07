"""The response decoder (Sec. 3.3.2, Eq. 11): a transformer decoder over the memory Emo_fused and a
pointer-generator (See et al. 2017) that copies from the context tokens.

P(w) = p_gen * P_vocab(w) + (1 - p_gen) * sum_{i: x_i = w} a_i over the *extended* vocabulary: the fixed vocabulary
plus each example's out-of-vocabulary context words (ids V, V+1, …), so an OOV word of the context can be produced.
a is a copy attention of every decoder state over *all* context token states H (not just the first), p_gen =
sigmoid(w [c; s; x]) from the copy context c, the decoder state s and the input embedding x. The output is the log
of the mixture (a distribution), and the loss is NLL on it — never cross-entropy applied to probabilities.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from empathkit.methods.reflectdiffu.encoder import TokenEmbedding
from empathkit.methods.reflectdiffu.vocab import PAD_ID, UNK_ID


def copy_mixture(p_vocab: torch.Tensor, attn: torch.Tensor, p_gen: torch.Tensor, src_ext: torch.Tensor,
                 n_oov: int) -> torch.Tensor:
    """The pointer-generator distribution (B, T, V + n_oov): p_gen * P_vocab (zero on OOV ids) + (1 - p_gen) *
    the copy attention scattered onto each source token's extended id."""
    B, T, _ = p_vocab.shape
    out = torch.cat([p_vocab * p_gen, p_vocab.new_zeros(B, T, n_oov)], -1)
    idx = src_ext[:, None, :].expand(B, T, src_ext.shape[1])
    return out.scatter_add(2, idx, attn * (1.0 - p_gen))


class PointerGeneratorDecoder(nn.Module):
    def __init__(self, emb: TokenEmbedding, vocab_size: int, d: int, heads: int, layers: int, ff: int,
                 dropout: float):
        super().__init__()
        self.emb, self.V = emb, vocab_size
        layer = nn.TransformerDecoderLayer(d, heads, ff, dropout, batch_first=True, norm_first=True)
        self.dec = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d))
        self.out = nn.Linear(d, vocab_size, bias=False)
        self.out.weight = emb.word.weight  # tied with the word embedding (MoEL)
        self.copy_q = nn.Linear(d, d)
        self.gen = nn.Linear(3 * d, 1)

    def forward(self, dec_in: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None,
                H_src: torch.Tensor, src_ext: torch.Tensor, src_pad: torch.Tensor, n_oov: int) -> torch.Tensor:
        """Log-probabilities (B, T, V + n_oov) of the next token at every position of ``dec_in`` (extended ids)."""
        T = dec_in.shape[1]
        inp = dec_in.masked_fill(dec_in >= self.V, UNK_ID)
        x = self.emb(inp)
        causal = torch.triu(torch.ones(T, T, dtype=torch.bool, device=x.device), 1)
        s = self.dec(x, memory, tgt_mask=causal, tgt_key_padding_mask=inp.eq(PAD_ID),
                     memory_key_padding_mask=memory_pad, tgt_is_causal=True)
        p_vocab = torch.softmax(self.out(s), -1)
        scores = self.copy_q(s) @ H_src.transpose(1, 2) / math.sqrt(s.shape[-1])
        attn = torch.softmax(scores.masked_fill(src_pad[:, None, :], float("-inf")), -1)
        c = attn @ H_src
        p_gen = torch.sigmoid(self.gen(torch.cat([c, s, x], -1)))
        return copy_mixture(p_vocab, attn, p_gen, src_ext, n_oov).clamp(min=1e-12).log()
