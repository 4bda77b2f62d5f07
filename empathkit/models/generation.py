"""The batched decoding loop under every transformers-based ``Generator``: left padding, length-bucketed batches,
greedy or sampling, per-row streaming, per-row cancellation, a progress bar.

The batch path is several times faster per response than one-at-a-time ``generate`` on CPU (see
``benchmarks/generation.py``). ``batch_context(indices) -> context manager`` is entered around each ``generate`` call
(ECG-LoRA sets its per-example gate there). ``on_text(i, delta)`` receives each row's new text as it is decoded
(streaming within a batch: :class:`RowStreamer`); ``should_stop(i)`` ends row ``i`` early (a client went away).
Decoder-only outputs are cut after the prompt; encoder–decoder outputs hold only the decoder side and are decoded
whole.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Callable, ContextManager, Sequence

import torch
from pydantic import BaseModel, Field
from tqdm.auto import tqdm
from transformers.generation.streamers import BaseStreamer


class GenerationSettings(BaseModel):
    """Decoding settings saved with every prediction."""

    model_config = {"extra": "forbid"}

    max_new_tokens: int = Field(48, ge=1, le=4096)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0.0, le=5.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.1, ge=1.0, le=3.0)
    batch_size: int = Field(32, ge=1, le=1024)
    max_prompt_tokens: int | None = Field(384, ge=8)
    seed: int = 0


@dataclass
class Output:
    text: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled"


def generate_kwargs(s: GenerationSettings, tokenizer) -> dict:
    """``model.generate`` keyword arguments for these settings."""
    kw = dict(max_new_tokens=s.max_new_tokens, do_sample=s.do_sample, repetition_penalty=s.repetition_penalty,
              pad_token_id=tokenizer.pad_token_id)
    if s.do_sample:
        kw.update(temperature=s.temperature, top_p=s.top_p)
    else:
        kw.update(temperature=None, top_p=None, top_k=None)
    return kw


def _buckets(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class RowStreamer(BaseStreamer):
    """Streams every row of one batched ``generate`` call: ``on_text(index, delta)`` per row and step.

    transformers' own streamers accept batch size 1 only; this one keeps each row's token ids, decodes them
    incrementally and holds back an incomplete UTF-8 character (``\\ufffd``) until the next token completes it."""

    def __init__(self, tokenizer, indices: Sequence[int], on_text: Callable[[int, str], None], skip_prompt: bool):
        self.tokenizer, self.indices, self.on_text = tokenizer, list(indices), on_text
        self.ids: list[list[int]] = [[] for _ in self.indices]
        self.sent = [""] * len(self.indices)
        self._skip = skip_prompt
        self.done = [False] * len(self.indices)

    def put(self, value) -> None:
        if self._skip:  # the first call carries the prompt (decoder-only) or the decoder start token
            self._skip = False
            return
        value = value.reshape(len(self.indices), -1)
        eos = self.tokenizer.eos_token_id
        for row, toks in enumerate(value.tolist()):
            if self.done[row]:
                continue
            self.ids[row].extend(toks)
            if eos is not None and eos in toks:
                self.done[row] = True
            self._emit(row)

    def _emit(self, row: int, final: bool = False) -> None:
        text = self.tokenizer.decode(self.ids[row], skip_special_tokens=True).lstrip()
        if not final and text.endswith("\ufffd"):
            return
        if len(text) > len(self.sent[row]) and text.startswith(self.sent[row]):
            self.on_text(self.indices[row], text[len(self.sent[row]):])
            self.sent[row] = text

    def end(self) -> None:
        for row in range(len(self.indices)):
            self._emit(row, final=True)


class _RowStop:
    """A stopping criterion that ends the rows ``should_stop`` names (per-row booleans, as transformers expects)."""

    def __init__(self, indices: Sequence[int], should_stop: Callable[[int], bool]):
        self.indices, self.should_stop = list(indices), should_stop
        self.stopped: set[int] = set()

    def __call__(self, input_ids, scores, **kwargs):
        flags = [bool(self.should_stop(i)) for i in self.indices]
        self.stopped |= {i for i, f in zip(self.indices, flags) if f}
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)


@torch.inference_mode()
def generate_texts(model, tokenizer, prompts: Sequence[str], settings: GenerationSettings | None = None,
                   batch_context: Callable[[list[int]], ContextManager] | None = None, progress: bool = True,
                   desc: str = "generating", on_text: Callable[[int, str], None] | None = None,
                   should_stop: Callable[[int], bool] | None = None) -> list[Output]:
    """Generate a completion for every rendered prompt; results come back in input order."""
    from transformers import StoppingCriteriaList

    s = settings or GenerationSettings()
    torch.manual_seed(s.seed)
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    # decoder-only models continue the prompt: pad on the left. Encoder-decoder inputs are padded on the right
    # (BART's absolute positions change with left padding) and get their tokenizer's special tokens (T5's </s>).
    tokenizer.padding_side = "right" if encoder_decoder else "left"
    enc_lens = [len(tokenizer(p, add_special_tokens=encoder_decoder)["input_ids"]) for p in prompts]
    out: list[Output | None] = [None] * len(prompts)
    gen_kwargs = generate_kwargs(s, tokenizer)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="resp")
    for idx in _buckets(enc_lens, s.batch_size):
        # encoder-decoder tokenizers (T5) append their end-of-sequence token themselves
        batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                          add_special_tokens=encoder_decoder)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        extra: dict = {}
        stop = _RowStop(idx, should_stop) if should_stop is not None else None
        if stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([stop])
        streamer = RowStreamer(tokenizer, idx, on_text, skip_prompt=True) if on_text is not None else None
        if streamer is not None:
            extra["streamer"] = streamer
        ctx = batch_context(idx) if batch_context else contextlib.nullcontext()
        with ctx:
            gen = model.generate(**batch, **gen_kwargs, **extra)
        new = gen if encoder_decoder else gen[:, batch["input_ids"].shape[1]:]
        special = set(tokenizer.all_special_ids)
        for row, i in enumerate(idx):
            toks = new[row]
            n_new = sum(1 for t in toks.tolist() if t not in special) if encoder_decoder else (
                int((toks != tokenizer.pad_token_id).sum()) if tokenizer.pad_token_id is not None else len(toks))
            if stop is not None and i in stop.stopped:
                finish = "cancelled"
            elif encoder_decoder:  # the first token is the decoder start; the reply stopped if it emitted EOS
                finish = "stop" if tokenizer.eos_token_id in toks.tolist()[1:] else "length"
            else:
                finish = "length" if n_new >= s.max_new_tokens else "stop"
            out[i] = Output(tokenizer.decode(toks, skip_special_tokens=True).strip(), enc_lens[i], n_new, finish)
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def settings_dict(s: GenerationSettings) -> dict:
    return s.model_dump() if hasattr(s, "model_dump") else asdict(s)
