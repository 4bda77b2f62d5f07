"""The batched decoding loop under every transformers-based ``Generator``: left padding, length-bucketed batches,
greedy or sampling, per-row streaming, per-row cancellation, a progress bar.

The batch path is several times faster per response than one-at-a-time ``generate`` on CPU (see
``benchmarks/generation.py``). ``batch_context(indices) -> context manager`` is entered around each ``generate`` call
(ECG-LoRA sets its per-example gate there). ``on_text(i, delta)`` receives each row's new text as it is decoded
(streaming within a batch: :class:`RowStreamer`); ``should_stop(i)`` ends row ``i`` early (a client went away).
Decoder-only outputs are cut after the prompt; encoder–decoder outputs hold only the decoder side and are decoded
whole.

**Shared-prefix KV cache** (``prefix_cache``, default on): when every prompt of a call starts with the same tokens
(the system prompt and template header), that prefix is prefilled once, kept on the model (:class:`PrefixStore`,
a few entries, keyed by the prefix's token ids) and reused for every batch — and by later calls with the same
common prefix. Single-prompt calls are not cached, so the layout depends only on the call's own prompts. Rows are laid out as
``[prefix][padding][suffix]``: the attention mask hides the padding and position ids follow the mask, so the
result is the uncached computation (greedy tokens identical on the test models; logits within float rounding).
It is skipped for encoder–decoder models and when ``batch_context`` is given (ECG-LoRA's per-row gate changes the
prefix's keys and values).

**Static cache and a compiled decoding step** (``cache: static``, ``compile: true``): transformers' preallocated
``StaticCache`` and its own ``torch.compile`` of the decoding step (``CompileConfig``; transformers compiles on CPU
only when asked). Same greedy outputs (tests/models/test_prefix_cache_precision.py; 12/12 SmolLM2 replies). Measured
with SmolLM2 at batch 1, 32 new tokens, 1 thread (``benchmarks/results/decode-loop.md``, machine shared): decode
1.04× the dynamic cache for static alone, 1.16× with the compiled step, after a one-off compile of ~80 s and an
occasional recompile (~70 s) at a new prompt length; so neither is the default. The per-token overhead that remains
is generate's; the llama.cpp backend is the fast batch-1 path (2.3–3.7× decode, ``benchmarks/results/generation.md``).
A static cache cannot take the shared prefix (a ``DynamicCache``): with ``cache: static`` the prefix cache is off.
Step-level decoding (continuous batching) always uses its own dynamic cache; ``cache`` / ``compile`` do not change
outputs, so it ignores them.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Callable, ContextManager, Literal, Sequence

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
    no_repeat_ngram_size: int = Field(0, ge=0, le=10, description="forbid repeating any n-gram of this size "
                                                                   "within a reply (0: off)")
    num_beams: int = Field(1, ge=1, le=16, description="beam search width (1 = greedy / sampling); a beam-searched "
                                                        "reply is produced whole: no token streaming, no prefix cache")
    batch_size: int = Field(32, ge=1, le=1024)
    max_prompt_tokens: int | None = Field(384, ge=8)
    seed: int = 0
    prefix_cache: bool = Field(True, description="reuse the prompts' shared prefix KV cache (module docstring)")
    precision: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="weights precision, applied when the generator is loaded (models/precision.py; "
                               "predictions record the precision actually used)")
    cache: Literal["dynamic", "static"] = Field(
        "dynamic", description="KV cache of transformers' generate: static = preallocated (same outputs; no "
                               "shared-prefix reuse, which needs a dynamic cache)")
    compile: bool = Field(False, description="torch.compile the decoding step (needs cache: static; one-off compile "
                                             "of minutes on CPU, then ~1.16x batch-1 decoding here)")
    backend: Literal["transformers", "llama-cpp"] = Field(
        "transformers", description="llama-cpp: run on a GGUF file (methods/llamacpp.py; the llama-cpp extra)")
    gguf: str | None = Field(None, description="the GGUF file / export folder for backend llama-cpp (default: the "
                                               "run's `empathkit export`)")


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
    if s.num_beams > 1:
        kw.update(num_beams=s.num_beams)
    if s.no_repeat_ngram_size:
        kw.update(no_repeat_ngram_size=s.no_repeat_ngram_size)
    if s.cache == "static":
        kw.update(cache_implementation="static")
        if s.compile:  # transformers compiles the decoding step itself; on CPU only when told to (private flag)
            from transformers import CompileConfig

            cc = CompileConfig(mode="default")
            cc._compile_all_devices = True
            kw.update(compile_config=cc)
    elif s.compile:
        from empathkit.errors import ConfigError

        raise ConfigError("generation.compile needs generation.cache=static (a dynamic cache changes shape every step)")
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


MIN_PREFIX = 16  # shorter shared prefixes are not worth a cache entry


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix, leaving at least one token of every sequence uncached."""
    n = min(len(x) for x in seqs) - 1
    first = seqs[0]
    for i in range(max(n, 0)):
        if any(x[i] != first[i] for x in seqs[1:]):
            return i
    return max(n, 0)


def _cache_kwarg(model) -> str:
    """The name transformers' ``forward`` / ``generate`` use for a KV cache (``cache``; ``past_key_values`` before
    5.2x)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps forward in **kwargs
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _weights_key(model) -> tuple:
    """Changes whenever a weight is replaced or updated in place (optimizer steps bump ``Tensor._version``)."""
    return tuple((p.data_ptr(), p._version, p.dtype) for p in model.parameters())


class PrefixStore:
    """Prefilled KV caches of shared prompt prefixes for one model (hand-written: transformers caches one call's
    prompt, not a prefix shared across calls). ``get(seqs)`` returns ``(length, cache)`` for the common prefix of
    the call's prompts (two or more), prefilled on first use and reused by later calls with the same prefix."""

    def __init__(self, model, size: int = 4):
        self.model, self.size = model, size
        self.entries: dict[tuple[int, ...], object] = {}
        self.hits = self.misses = 0

    def get(self, seqs: Sequence[Sequence[int]]):
        key = _weights_key(self.model)
        if key != getattr(self, "_weights", None):  # trained / converted since: the stored caches are stale
            self.entries.clear()
            self._weights = key
        # the prefix used depends on the call's own prompts only (their common prefix), never on what earlier calls
        # stored: a resumed or re-run call lays its rows out the same way, so sampled outputs match too
        p = _common_prefix(seqs) if len(seqs) > 1 else 0
        if p < MIN_PREFIX:
            return 0, None
        key = tuple(seqs[0][:p])
        if key in self.entries:
            self.hits += 1
            self.entries[key] = self.entries.pop(key)  # most recently used last
            return p, self.entries[key]
        from transformers import DynamicCache

        cache = DynamicCache()
        with torch.no_grad():
            self.model(input_ids=torch.tensor([list(key)], device=self.model.device), use_cache=True,
                       **{_cache_kwarg(self.model): cache})
        self.misses += 1
        self.entries[key] = cache
        while len(self.entries) > self.size:
            self.entries.pop(next(iter(self.entries)))
        return p, cache


def prefix_store(model) -> PrefixStore:
    """The model's :class:`PrefixStore` (created on first use; emptied when the weights change)."""
    store = getattr(model, "_empathkit_prefix_store", None)
    if store is None:
        store = PrefixStore(model)
        object.__setattr__(model, "_empathkit_prefix_store", store)  # not a submodule / parameter
    return store


def _prefixed_batch(ids: Sequence[Sequence[int]], p: int, pad_id: int, device) -> dict:
    """``[prefix][padding][suffix]`` rows with their attention mask."""
    suf = [list(x[p:]) for x in ids]
    width = max(len(x) for x in suf)
    inp = [list(ids[0][:p]) + [pad_id] * (width - len(x)) + x for x in suf]
    att = [[1] * p + [0] * (width - len(x)) + [1] * len(x) for x in suf]
    return {"input_ids": torch.tensor(inp, device=device), "attention_mask": torch.tensor(att, device=device)}


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
    enc_ids = [tokenizer(p, add_special_tokens=encoder_decoder)["input_ids"] for p in prompts]
    enc_lens = [len(x) for x in enc_ids]
    beams = s.num_beams > 1  # HF beam search takes neither a streamer nor per-row stopping: whole replies only
    use_prefix = bool(s.prefix_cache and not encoder_decoder and batch_context is None and prompts
                      and tokenizer.pad_token_id is not None and not beams and s.cache == "dynamic")
    p_len, p_cache = prefix_store(model).get(enc_ids) if use_prefix else (0, None)
    out: list[Output | None] = [None] * len(prompts)
    gen_kwargs = generate_kwargs(s, tokenizer)
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="resp")
    for idx in _buckets(enc_lens, s.batch_size):
        # encoder-decoder tokenizers (T5) append their end-of-sequence token themselves
        extra: dict = {}
        if p_cache is not None:
            import copy

            batch = _prefixed_batch([enc_ids[i] for i in idx], p_len, tokenizer.pad_token_id, model.device)
            cache = copy.deepcopy(p_cache)  # generate extends the cache it is given
            if len(idx) > 1:
                cache.batch_repeat_interleave(len(idx))
            extra[_cache_kwarg(model)] = cache
        else:
            batch = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                              add_special_tokens=encoder_decoder)
            batch = {k: v.to(model.device) for k, v in batch.items()}
        stop = _RowStop(idx, should_stop) if should_stop is not None and not beams else None
        if stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([stop])
        streamer = RowStreamer(tokenizer, idx, on_text, skip_prompt=True) if on_text is not None and not beams else None
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
            if beams and on_text is not None:  # the whole reply as one delta
                on_text(i, out[i].text)
        bar.update(len(idx))
    bar.close()
    return out  # type: ignore[return-value]


def settings_dict(s: GenerationSettings) -> dict:
    return s.model_dump() if hasattr(s, "model_dump") else asdict(s)
