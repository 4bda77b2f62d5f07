"""Fusion-in-Decoder (Izacard & Grave 2021, "Leveraging Passage Retrieval with Generative Models for Open Domain
Question Answering") for any Hugging Face encoder–decoder (T5, FLAN-T5, BART): the building block of REG.

Each row (one reply to write) has several *passages* — for REG the dialogue context together with one retrieved
exemplar. The encoder reads every passage on its own (cost linear in the number of passages, no cross-passage
attention); the encoder states of a row's passages are then concatenated along the sequence axis, so the decoder's
cross-attention sees all of them at once and fuses the evidence while it writes.

Two details of this implementation:

- passages are right-padded for the encoder (absolute-position encoders such as BART need it), and only their real
  tokens are concatenated: a row's fused sequence is ``sum(len(passage_i))`` states followed by padding up to the
  longest row of the batch. Cross-attention has no positional term in T5 or BART, so this compact layout gives the
  same result as the original fixed ``n_passages × passage_length`` layout with masked padding, with less memory;
- a row with a single passage is exactly plain seq2seq (the same encoder states, the same mask), which
  :class:`empathkit.methods.seq2seq.Seq2SeqGenerator` uses for its teacher-forced scores.

This part is hand-written on purpose: no maintained library packages FiD for Hugging Face seq2seq models (the
authors' ``facebookresearch/FiD`` and Atlas repositories ship their own patched T5 classes for old transformers
versions; ParlAI's FiD lives inside ParlAI's agents). Working on ``encoder_outputs`` keeps the model a stock
``AutoModelForSeq2SeqLM`` (or a PEFT wrapper of one), so ``save_pretrained`` / ``from_pretrained`` stay untouched.

API::

    enc, mask, n = fuse(model, tokenizer, [["ctx + exemplar 1", "ctx + exemplar 2"], ["ctx only"]])
    outs = fid_generate(model, tokenizer, rows, settings, on_text=..., should_stop=...)   # -> list[Output]
    out, labels = fid_forward(model, tokenizer, rows, targets); out.loss.backward()       # training (mean NLL)
    FiDModel(model)(**fid_inputs(tokenizer, rows, targets)).loss                           # the same, one forward
    scores = fid_score(model, tokenizer, rows, targets)                                    # -> list[TokenScore]
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from empathkit.models.generation import (GenerationSettings, Output, RowStreamer, _buckets, _RowStop,
                                         generate_kwargs)
from empathkit.types import TokenScore

IGNORE = -100
Rows = Sequence[Sequence[str]]  # per row, its passages


def _device(model) -> torch.device:
    return next(model.parameters()).device


def passage_batch(tokenizer, rows: Rows, max_passage_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """The flattened passages of ``rows`` as encoder inputs: ``input_ids`` / ``attention_mask`` (passages, len),
    right-padded, and ``passage_row`` (passages,): the row each passage belongs to. Passages longer than
    ``max_passage_tokens`` are cut at the end."""
    if any(len(r) == 0 for r in rows):
        raise ValueError("every row needs at least one passage")
    flat = [p for r in rows for p in r]
    batch = tokenizer(flat, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=True,
                      truncation=max_passage_tokens is not None, max_length=max_passage_tokens)
    owner = torch.tensor([i for i, r in enumerate(rows) for _ in r], dtype=torch.long)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "passage_row": owner}


def fuse_states(encoder, input_ids: torch.Tensor, attention_mask: torch.Tensor, passage_row: torch.Tensor,
                n_rows: int | None = None):
    """Encode every passage separately and concatenate each row's encoder states (only real tokens, module
    docstring). Returns ``(BaseModelOutput(last_hidden_state=(rows, fused_len, d)), attention_mask (rows,
    fused_len), tokens per row)``."""
    from transformers.modeling_outputs import BaseModelOutput

    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (passages, len, d)
    n_rows = int(passage_row.max()) + 1 if n_rows is None else n_rows
    pieces: list[list[torch.Tensor]] = [[] for _ in range(n_rows)]
    for p, i in enumerate(passage_row.tolist()):
        pieces[i].append(hidden[p, attention_mask[p].bool()])
    seqs = [torch.cat(x) for x in pieces]
    n = max(len(s) for s in seqs)
    fused = hidden.new_zeros(n_rows, n, hidden.shape[-1])
    fmask = attention_mask.new_zeros(n_rows, n)
    for i, s in enumerate(seqs):
        fused[i, :len(s)] = s
        fmask[i, :len(s)] = 1
    return BaseModelOutput(last_hidden_state=fused), fmask, [len(s) for s in seqs]


def fuse(model, tokenizer, rows: Rows, max_passage_tokens: int | None = None):
    """:func:`passage_batch` + :func:`fuse_states` with ``model``'s encoder, on the model's device."""
    dev = _device(model)
    b = {k: v.to(dev) for k, v in passage_batch(tokenizer, rows, max_passage_tokens).items()}
    return fuse_states(model.get_encoder(), b["input_ids"], b["attention_mask"], b["passage_row"], len(rows))


def fused_forward(model, input_ids, attention_mask, passage_row, labels):
    """The encoder–decoder ``model``'s teacher-forced output over fused passages (one row per ``labels`` row)."""
    enc, mask, _ = fuse_states(model.get_encoder(), input_ids, attention_mask, passage_row, labels.shape[0])
    return model(encoder_outputs=enc, attention_mask=mask, labels=labels)


class FiDModel(torch.nn.Module):
    """An encoder–decoder model (or its PEFT wrapper) as ``.model``, whose ``forward`` is the whole FiD pass
    (:func:`fused_forward`), for training: a DDP wrapper only synchronises gradients of what runs inside its own
    ``forward``, so the per-passage encoder call must happen there rather than through ``model.get_encoder()`` on
    the wrapped model. Inputs: :func:`fid_inputs`."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, passage_row, labels):
        return fused_forward(self.model, input_ids, attention_mask, passage_row, labels)


def fid_inputs(tokenizer, rows: Rows, targets: Sequence[str], max_passage_tokens: int | None = None,
               max_target_tokens: int | None = 128, device=None) -> dict[str, torch.Tensor]:
    """:func:`passage_batch` + ``labels`` (the references' tokens, :func:`target_ids`, padded with -100)."""
    lab = [target_ids(tokenizer, t, max_target_tokens) for t in targets]
    n = max(len(x) for x in lab)
    out = {**passage_batch(tokenizer, rows, max_passage_tokens),
           "labels": torch.tensor([x + [IGNORE] * (n - len(x)) for x in lab])}
    return out if device is None else {k: v.to(device) for k, v in out.items()}


def target_ids(tokenizer, text: str, max_tokens: int | None = None) -> list[int]:
    """Decoder labels of a reference: the tokenizer's encoding (T5 appends EOS; BART wraps it in ``<s> … </s>``),
    with EOS appended when the tokenizer does not (the model must learn to stop), cut to ``max_tokens``."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not ids or ids[-1] != eos):
        ids = ids + [eos]
    if max_tokens is not None and len(ids) > max_tokens:
        ids = ids[:max_tokens - 1] + ([eos] if eos is not None else ids[max_tokens - 1:max_tokens])
    return ids


def fid_forward(model, tokenizer, rows: Rows, targets: Sequence[str], max_passage_tokens: int | None = None,
                max_target_tokens: int | None = 128):
    """Teacher-forced forward pass: labels = the reference tokens (the model shifts them right into the decoder
    input). Returns ``(model output, labels)``; ``output.loss`` is the batch's mean token NLL (for training)."""
    b = fid_inputs(tokenizer, rows, targets, max_passage_tokens, max_target_tokens, device=_device(model))
    return fused_forward(model, **b), b["labels"]


@torch.inference_mode()
def fid_score(model, tokenizer, rows: Rows, targets: Sequence[str], batch_size: int = 8,
              max_passage_tokens: int | None = None, max_target_tokens: int | None = 128) -> list[TokenScore]:
    """Summed token NLL of each target (its tokens and EOS) given the row's passages."""
    out: list[TokenScore] = []
    for b in range(0, len(rows), batch_size):
        res, labels = fid_forward(model, tokenizer, rows[b:b + batch_size], targets[b:b + batch_size],
                                  max_passage_tokens, max_target_tokens)
        nll = torch.nn.functional.cross_entropy(res.logits.float().transpose(1, 2), labels, ignore_index=IGNORE,
                                                reduction="none")
        valid = labels != IGNORE
        out += [TokenScore(float(nll[r][valid[r]].sum()), int(valid[r].sum())) for r in range(len(labels))]
    return out


@torch.inference_mode()
def fid_generate(model, tokenizer, rows: Rows, settings: GenerationSettings | None = None, progress: bool = False,
                 desc: str = "generating (fid)", on_text: Callable[[int, str], None] | None = None,
                 should_stop: Callable[[int], bool] | None = None,
                 max_passage_tokens: int | None = None) -> list[Output]:
    """One reply per row, decoded from the fused encoder states: the same settings, batching by length, per-row
    streaming and cancellation as :func:`empathkit.models.generation.generate_texts`. ``prompt_tokens`` is the
    fused length (all passages' tokens)."""
    from tqdm.auto import tqdm
    from transformers import StoppingCriteriaList

    s = settings or GenerationSettings()
    torch.manual_seed(s.seed)
    lengths = [sum(len(tokenizer(p, add_special_tokens=True)["input_ids"]) for p in r) for r in rows]
    gen_kwargs = generate_kwargs(s, tokenizer)
    eos, special = tokenizer.eos_token_id, set(tokenizer.all_special_ids)
    out: list[Output | None] = [None] * len(rows)
    bar = tqdm(total=len(rows), desc=desc, disable=not progress, unit="resp")
    for idx in _buckets(lengths, s.batch_size):
        enc, mask, n_src = fuse(model, tokenizer, [rows[i] for i in idx], max_passage_tokens)
        extra: dict = {}
        stop = _RowStop(idx, should_stop) if should_stop is not None else None
        if stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([stop])
        if on_text is not None:
            extra["streamer"] = RowStreamer(tokenizer, idx, on_text, skip_prompt=True)  # skips the decoder start
        gen = model.generate(encoder_outputs=enc, attention_mask=mask, **gen_kwargs, **extra)
        for row, i in enumerate(idx):
            toks = gen[row, 1:].tolist()  # without the decoder start token
            n_new = sum(1 for t in toks if t not in special)
            finish = "cancelled" if stop is not None and i in stop.stopped else (
                "stop" if eos is not None and eos in toks else "length")
            out[i] = Output(tokenizer.decode(toks, skip_special_tokens=True).strip(), n_src[row], n_new, finish)
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]
