"""Step-level decoding over a transformers causal LM: a *running batch* that rows join and leave between decoding
steps (iteration-level scheduling, the model side of :mod:`empathkit.serving.continuous`).

:class:`StepDecoder` holds one left-padded batched ``DynamicCache``. :meth:`StepDecoder.add` prefills new rows (those
arriving together in one padded forward; the prompts' shared prefix from the model's
:class:`~empathkit.models.generation.PrefixStore` when ``settings.prefix_cache``) and merges their caches into the
running batch (the narrower side is left-padded with masked zeros); :meth:`StepDecoder.step` runs ONE forward for
every row (one new token each) and returns the rows that finished, which leave the batch (their cache rows are
dropped, and columns that are padding for every remaining row are cut off). Position ids follow the attention mask,
so every row computes what it would alone; the same request decoded alone (``Generator.chat`` with one
conversation) gives the same greedy tokens (logits within float rounding; tests/serving/test_continuous.py).

Per row, as in :func:`~empathkit.models.generation.generate_texts`: its own ``GenerationSettings`` (budget,
repetition penalty and ``no_repeat_ngram_size`` over the row's own prompt + generated tokens, greedy or seeded
sampling with temperature / top-k / top-p — transformers' logits processors, applied per row), streaming through the same
:class:`~empathkit.models.generation.RowStreamer`, ``should_stop`` (→ ``cancelled``), the same text / token count /
finish reason. Sampled rows draw from their own ``torch.Generator`` (seeded with ``settings.seed``), so a sampled
reply does not depend on which other rows share the batch, but it is not the same draw as ``Generator.chat``'s.

Why hand-written (about 200 lines): transformers 5.24's ``ContinuousBatchingManager`` (paged attention,
``model.generate_batch`` / ``init_continuous_batching``) runs on CPU but DROPS ``RepetitionPenaltyLogitsProcessor``
("isn't supported by CB"), so its greedy texts differ from ``Generator.chat``'s (measured with SmolLM2: 4/4 prompts
changed), and it was ~6x slower on this 2-core CPU for 4 prompts x 32 tokens (128 s with its warm-up vs 21 s batched
``generate``). ``generate`` itself cannot take rows mid-call. What is reused: ``DynamicCache``, the logits
processors, the model's own forward, the prefix store and the row streamer.

Limits: plain causal LMs whose cache layers are all ``DynamicLayer`` (no sliding-window layers); no beam search
(``requests`` refuses ``num_beams > 1``; ``CausalLMGenerator.step_decoder`` returns ``None`` for it, so the server
micro-batches); one thread at a time (the serving worker thread).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from empathkit.models.generation import GenerationSettings, RowStreamer, _cache_kwarg, _prefixed_batch, prefix_store
from empathkit.types import Reply

# (conversations, settings, controls) -> [(rendered prompt, Reply.info)] — the generator's own prompts
PromptFn = Callable[[Sequence[list[dict]], GenerationSettings, Sequence[Any]], list[tuple[str, dict]]]


@dataclass
class StepRequest:
    """One conversation to decode: its prompt's token ids (from the generator), settings, streaming / stop hooks."""

    prompt_ids: list[int]
    settings: GenerationSettings
    info: dict = field(default_factory=dict)  # Reply.info from the generator
    on_text: Callable[[str], None] | None = None
    should_stop: Callable[[], bool] | None = None
    handle: Any = None  # the caller's object (a serving job)


@dataclass
class _Row:
    req: StepRequest
    ids: list[int]  # prompt + generated (the repetition penalty's window)
    new: list[int] = field(default_factory=list)
    streamer: RowStreamer | None = None
    rng: torch.Generator | None = None
    processors: list = field(default_factory=list)
    largest_batch: int = 1


@dataclass
class Finished:
    request: StepRequest
    reply: Reply
    largest_batch: int  # most rows it shared a decoding step with (itself included)


class StepDecoder:
    """A running batch over one causal LM (module docstring). ``prompts`` is the generator's prompt function."""

    def __init__(self, model, tokenizer, prompts: PromptFn):
        self.model, self.tokenizer, self._prompts = model, tokenizer, prompts
        gc = getattr(model, "generation_config", None)
        eos = getattr(gc, "eos_token_id", None)
        eos = tokenizer.eos_token_id if eos is None else eos
        self.eos = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos), 0)
        self.top_k = getattr(gc, "top_k", None) or 0
        self.rows: list[_Row] = []
        self.cache = None
        self.mask: torch.Tensor | None = None  # [rows, cached columns] (1 = a real token)
        self.last_prompt: list[int] | None = None  # the previous prompt: its common prefix with the next one is cached
        self.steps = 0
        self.timing = {"prefill_s": 0.0, "prefill_tokens": 0, "step_s": 0.0}  # model time, for /health and benchmarks

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def requests(self, conversations, settings: GenerationSettings, controls) -> list[StepRequest]:
        """The generator's prompts (and reply info) for these conversations, tokenised as ``generate_texts`` does."""
        if settings.num_beams > 1:  # never decode other settings than asked for (step_decoder() routes these away)
            from empathkit.errors import ConfigError

            raise ConfigError("generation.num_beams > 1 is not step-level decoding: serve with --scheduler micro")
        out = []
        for prompt, info in self._prompts(conversations, settings, controls):
            ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            out.append(StepRequest(ids, settings, dict(info)))
        return out

    # -- joining -------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def add(self, requests: Sequence[StepRequest]) -> list[Finished]:
        """Prefill ``requests`` and merge them into the running batch; returns rows already finished (a first token
        that ends them, a budget of one token, a row cancelled meanwhile)."""
        done: list[Finished] = []
        for use_prefix in (True, False):
            group = [r for r in requests if bool(r.settings.prefix_cache) == use_prefix]
            if group:
                done += self._add(group, use_prefix)
        return done

    def _add(self, requests: Sequence[StepRequest], use_prefix: bool) -> list[Finished]:
        dev = self.device
        seqs = [r.prompt_ids for r in requests]
        p_len, p_cache = 0, None
        if use_prefix:  # the common prefix of the new prompts (or of the one new prompt and the previous one)
            ref = seqs if len(seqs) > 1 else seqs + ([self.last_prompt] if self.last_prompt else [])
            if len(ref) > 1:  # (length, cache) of the common prefix, at least one token of every prompt left over
                p_len, p_cache = prefix_store(self.model).get(ref)
        self.last_prompt = list(seqs[-1])
        kw: dict = {}
        if p_cache is not None:
            batch = _prefixed_batch(seqs, p_len, self.pad, dev)
            cache = copy.deepcopy(p_cache)
            if len(seqs) > 1:
                cache.batch_repeat_interleave(len(seqs))
            inputs, mask = batch["input_ids"][:, p_len:], batch["attention_mask"]
        else:
            from transformers import DynamicCache

            width = max(len(s) for s in seqs)
            inputs = torch.tensor([[self.pad] * (width - len(s)) + list(s) for s in seqs], device=dev)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=dev)
            cache = DynamicCache(config=self.model.config)
        pos = mask.long().cumsum(-1) - 1
        pos = pos.masked_fill(mask == 0, 1)[:, -inputs.shape[1]:]
        kw[_cache_kwarg(self.model)] = cache
        t0 = time.perf_counter()
        out = self.model(input_ids=inputs, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                         **kw)
        self.timing["prefill_s"] += time.perf_counter() - t0
        self.timing["prefill_tokens"] += int(inputs.numel())
        self._check_cache(cache)
        rows = [self._row(r) for r in requests]
        self._merge(cache, mask)
        self.rows += rows
        return self._advance(rows, out.logits[:, -1, :], list(range(len(self.rows) - len(rows), len(self.rows))))

    @staticmethod
    def _check_cache(cache) -> None:
        from transformers.cache_utils import DynamicLayer

        if any(type(layer) is not DynamicLayer for layer in cache.layers):
            raise NotImplementedError("step-level decoding needs plain DynamicLayer caches (no sliding window)")

    def _row(self, req: StepRequest) -> _Row:
        from transformers import (NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor,
                                  TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

        s = req.settings
        row = _Row(req, list(req.prompt_ids))
        if s.repetition_penalty != 1.0:  # generate's order: repetition penalty, n-gram ban, then the warpers
            row.processors.append(RepetitionPenaltyLogitsProcessor(s.repetition_penalty))
        if s.no_repeat_ngram_size:  # over prompt + reply, as generate does for a decoder-only model
            row.processors.append(NoRepeatNGramLogitsProcessor(s.no_repeat_ngram_size))
        if s.do_sample:  # the order generate uses: temperature, top-k, top-p
            row.processors.append(TemperatureLogitsWarper(s.temperature))
            if self.top_k:
                row.processors.append(TopKLogitsWarper(self.top_k))
            if s.top_p < 1.0:
                row.processors.append(TopPLogitsWarper(s.top_p))
            row.rng = torch.Generator(device=self.device).manual_seed(s.seed)
        if req.on_text is not None:
            cb = req.on_text
            row.streamer = RowStreamer(self.tokenizer, [0], lambda _i, d: cb(d), skip_prompt=False)
        return row

    def _merge(self, cache, mask: torch.Tensor) -> None:
        """Append ``cache`` (rows with attention ``mask``) to the running batch, left-padding the narrower side."""
        if self.cache is None:
            self.cache, self.mask = cache, mask
            return
        w_old, w_new = self.mask.shape[1], mask.shape[1]
        width = max(w_old, w_new)
        for old, new in zip(self.cache.layers, cache.layers):
            for name in ("keys", "values"):
                a, b = getattr(old, name), getattr(new, name)
                a = torch.nn.functional.pad(a, (0, 0, width - w_old, 0))
                b = torch.nn.functional.pad(b, (0, 0, width - w_new, 0))
                setattr(old, name, torch.cat([a, b], dim=0))
        self.mask = torch.cat([torch.nn.functional.pad(self.mask, (width - w_old, 0)),
                               torch.nn.functional.pad(mask, (width - w_new, 0))], dim=0)

    # -- decoding --------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(self) -> list[Finished]:
        """One new token for every row; returns (and removes) the rows that finished."""
        if not self.rows:
            return []
        dev = self.device
        last = torch.tensor([[r.ids[-1]] for r in self.rows], device=dev)
        self.mask = torch.cat([self.mask, torch.ones(len(self.rows), 1, dtype=self.mask.dtype, device=dev)], dim=1)
        pos = (self.mask.long().sum(-1, keepdim=True) - 1)
        t0 = time.perf_counter()
        out = self.model(input_ids=last, attention_mask=self.mask, position_ids=pos, use_cache=True,
                         **{_cache_kwarg(self.model): self.cache})
        self.timing["step_s"] += time.perf_counter() - t0
        self.steps += 1
        n = len(self.rows)
        for r in self.rows:
            r.largest_batch = max(r.largest_batch, n)
        return self._advance(self.rows, out.logits[:, -1, :], list(range(n)))

    def _advance(self, rows: Sequence[_Row], logits: torch.Tensor, where: list[int]) -> list[Finished]:
        """Pick each row's next token from its logits; rows that end leave the batch."""
        logits = logits.to(dtype=torch.float32)
        finished: list[tuple[int, Finished]] = []
        for k, row in enumerate(rows):
            scores = logits[k:k + 1]
            ids = torch.tensor([row.ids], device=scores.device)
            for proc in row.processors:
                scores = proc(ids, scores)
            if row.rng is not None:
                probs = torch.softmax(scores, dim=-1)
                tok = int(torch.multinomial(probs, 1, generator=row.rng)[0, 0])
            else:
                tok = int(scores.argmax(-1)[0])
            row.ids.append(tok)
            row.new.append(tok)
            if row.streamer is not None:
                row.streamer.put(torch.tensor([tok]))
            reason = self._finish_reason(row, tok)
            if reason is not None:
                finished.append((where[k], self._finished(row, reason)))
        if finished:
            self._drop({i for i, _ in finished})
        return [f for _, f in finished]

    def _finish_reason(self, row: _Row, tok: int) -> str | None:
        stop = row.req.should_stop
        if stop is not None and stop():
            return "cancelled"
        budget = row.req.settings.max_new_tokens
        if tok in self.eos or len(row.new) >= budget:  # generate's end-of-sequence and max-length criteria
            return "length" if sum(1 for t in row.new if t != self.pad) >= budget else "stop"  # as generate_texts
        return None

    def _finished(self, row: _Row, reason: str) -> Finished:
        if row.streamer is not None:
            row.streamer.end()
        n_new = sum(1 for t in row.new if t != self.pad)
        text = self.tokenizer.decode(row.new, skip_special_tokens=True).strip()
        reply = Reply(text, len(row.req.prompt_ids), n_new, reason, dict(row.req.info))
        return Finished(row.req, reply, row.largest_batch)

    def _drop(self, gone: set[int]) -> None:
        keep = [i for i in range(len(self.rows)) if i not in gone]
        self.rows = [self.rows[i] for i in keep]
        if not keep:
            self.cache, self.mask = None, None
            return
        idx = torch.tensor(keep, device=self.mask.device)
        self.mask = self.mask[idx]
        first = int((self.mask.sum(0) > 0).nonzero()[0, 0])  # columns that are padding for every remaining row
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[idx, :, first:]
            layer.values = layer.values[idx, :, first:]

    def cancel_all(self) -> list[Finished]:
        """End every row now (finish reason ``cancelled``): after a failed step, or on shutdown."""
        out = [self._finished(r, "cancelled") for r in self.rows]
        self.rows, self.cache, self.mask = [], None, None
        return out
