"""``generation.backend: llama-cpp`` — chat / serve / generate on a GGUF file (``empathkit export --format gguf``)
through ``llama-cpp-python`` (the optional ``llama-cpp`` extra; nothing else requires it).

:func:`with_backend` wraps an already-loaded causal-LM :class:`~empathkit.methods.base.Generator` (prompt, SFT,
EmPO, ECG-LoRA): the wrapped generator still builds every prompt (system prompt, template, ``fit_messages``, the
tokenizer's chat template — the very token ids the transformers path feeds its model), resolves the controls
(ECG-LoRA's emotion predictor) and reports its ``Reply.info``; llama.cpp only runs the network. The serving layer's
safety checks and emotion detector sit above ``Generator.chat`` and are unchanged.

Decoding, mapped onto llama.cpp's own sampler chain (``llama_sampler_*``):

- greedy + ``repetition_penalty``: ``penalties(last_n = n_ctx)`` fed with the prompt's tokens, then ``greedy`` — the
  transformers rule (divide a positive logit, multiply a negative one, for every token already in prompt or reply).
  llama-cpp-python's own ``Llama.generate`` penalises only the last 64 *generated* tokens, hence the custom chain.
- sampling: ``penalties → top_k (the model's generation_config, 50 by default) → temperature → top_p → dist(seed)``,
  transformers' order; the random streams differ, so sampled texts are not the transformers path's.
- stop tokens: the wrapped model's ``generation_config.eos_token_id`` (the same set transformers stops on); texts
  are decoded with the same tokenizer (``skip_special_tokens``) and streamed through the same ``RowStreamer``;
  ``should_stop(row)`` is checked after every token (``finish_reason = "cancelled"``).
- one row at a time (llama.cpp runs one sequence per context here): a batched ``chat`` answers its rows in turn;
  ``prefix_cache`` reuses the KV of the previous prompt's common prefix (llama.cpp's KV cache, same outputs).
- ECG-LoRA: the run's base GGUF + LoRA-adapter GGUF; each row's gate becomes the adapter's scale
  (``llama_set_adapters_lora``), which equals the gated update (llama.cpp scales ``B·A·x`` by ``scale · alpha / r``;
  empathkit's gate multiplies ``A·x``). Changing the scale drops the cached KV. Nothing of the gate is lost here.
- ``generation.precision`` does not apply: the weights' precision is the GGUF's type (``info["gguf_type"]``).
- ``score`` (reference perplexity) runs in llama.cpp too (logits of every position, same token ids and labels).

The sampler chain and the per-row loop are hand-written glue (llama-cpp-python has no transformers-compatible
penalty); everything numeric is llama.cpp's.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import weakref
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from empathkit.errors import ConfigError, ResourceMissing
from empathkit.methods.base import Generator, controls_list
from empathkit.methods.causal import CausalLMGenerator
from empathkit.models.generation import GenerationSettings, Output, RowStreamer
from empathkit.models.llamacpp_files import GGUFFiles, resolve_gguf
from empathkit.types import Reply, TokenScore

log = logging.getLogger(__name__)

BACKENDS = ("transformers", "llama-cpp")
PIN = "0.3.36"  # the llama-cpp-python version this module is tested with (pyproject's `llama-cpp` extra)
MAX_CTX = 4096
FILE_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 32: "bf16"}


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise ResourceMissing("generation.backend=llama-cpp needs llama-cpp-python: pip install 'empathkit[llama-cpp]' "
                              f"(llama-cpp-python=={PIN}, a source build; see docs/export.md)") from None
    return llama_cpp


_OPEN: "weakref.WeakSet[LlamaCppModel]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # closed before interpreter teardown: llama-cpp-python's __del__ at exit prints "TypeError: 'NoneType' object is
    # not callable" tracebacks once its module globals are gone
    for engine in list(_OPEN):
        engine.close()


class LlamaCppModel:
    """One llama.cpp model + context (+ optional LoRA adapter with a per-request scale)."""

    def __init__(self, files: GGUFFiles, n_ctx: int = MAX_CTX, threads: int | None = None):
        lc = self.lc = _llama_cpp()
        try:
            self.llm = lc.Llama(str(files.model), n_ctx=n_ctx, n_batch=512, n_threads=threads, n_threads_batch=threads,
                                verbose=False)
        except (ValueError, RuntimeError) as e:
            raise ConfigError(f"generation.gguf: {files.model}: llama.cpp could not load it ({e})") from None
        self.files, self.n_ctx, self.n_vocab = files, self.llm.n_ctx(), self.llm.n_vocab()
        self.adapter, self.scale = None, None
        if files.lora is not None:
            self.adapter = lc.llama_adapter_lora_init(self.llm.model, str(files.lora).encode())
            if not self.adapter:
                raise ConfigError(f"generation.gguf: {files.lora}: llama.cpp could not load the LoRA adapter")
            self.set_scale(1.0)
        ft = self.llm.metadata.get("general.file_type")
        self.type = FILE_TYPES.get(int(ft), ft) if ft is not None else "?"
        _OPEN.add(self)

    def close(self) -> None:
        self.llm.close()

    def set_scale(self, scale: float | None) -> None:
        """The LoRA adapter's scale for the next request (ECG-LoRA: the gate); a new scale drops the cached KV."""
        if self.adapter is None or scale is None or scale == self.scale:
            return
        arr = (self.lc.llama_adapter_lora_p_ctypes * 1)(self.adapter)
        if self.lc.llama_set_adapters_lora(self.llm.ctx, arr, 1, (ctypes.c_float * 1)(float(scale))):
            raise RuntimeError("llama_set_adapters_lora failed")
        self.scale = float(scale)
        self.llm.reset()

    def _sampler(self, s: GenerationSettings, prompt: Sequence[int], top_k: int):
        lc = self.lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_penalties(self.n_vocab, self.n_ctx,
                                                                          s.repetition_penalty, 0.0, 0.0))
        if s.do_sample:
            for smp in (lc.llama_sampler_init_top_k(top_k), lc.llama_sampler_init_temp(s.temperature),
                        lc.llama_sampler_init_top_p(s.top_p, 1), lc.llama_sampler_init_dist(s.seed)):
                lc.llama_sampler_chain_add(chain, smp)
        else:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
        for t in prompt:  # the prompt's tokens count for the repetition penalty, as in transformers
            lc.llama_sampler_accept(chain, t)
        return chain

    def prefill(self, ids: Sequence[int], reuse: bool) -> None:
        """Evaluate the prompt, keeping the KV of the longest common prefix with the previous one when ``reuse``."""
        llm, keep = self.llm, 0
        if reuse and llm.n_tokens:
            old = llm.input_ids[:llm.n_tokens]
            n = min(len(old), len(ids) - 1)
            neq = np.nonzero(old[:n] != np.asarray(ids[:n]))[0]
            keep = int(neq[0]) if len(neq) else n
        llm.n_tokens = keep  # eval() drops the KV from here on
        llm.eval(list(ids[keep:]))

    def generate(self, ids: Sequence[int], s: GenerationSettings, stop_ids: set[int], top_k: int = 50,
                 on_token=None, should_stop=None) -> tuple[list[int], bool]:
        """Token ids after ``ids`` (the last one a stop id when the model stopped) and whether it was cancelled."""
        if len(ids) + s.max_new_tokens > self.n_ctx:
            raise ConfigError(f"a prompt of {len(ids)} tokens + {s.max_new_tokens} new tokens exceeds the llama.cpp "
                              f"context of {self.n_ctx}; lower generation.max_prompt_tokens")
        self.prefill(ids, s.prefix_cache)
        chain = self._sampler(s, ids, top_k)
        out: list[int] = []
        try:
            for _ in range(s.max_new_tokens):
                tok = int(self.lc.llama_sampler_sample(chain, self.llm.ctx, -1))
                out.append(tok)
                if on_token is not None:
                    on_token(tok)
                if tok in stop_ids:
                    break
                if should_stop is not None and should_stop():
                    return out, True
                if len(out) < s.max_new_tokens:
                    self.llm.eval([tok])
        finally:
            self.lc.llama_sampler_free(chain)
        return out, False

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """(len(ids), n_vocab) logits of every position, from an empty KV cache."""
        lc, llm, n = self.lc, self.llm, len(ids)
        if n > self.n_ctx:
            raise ConfigError(f"a scored row of {n} tokens exceeds the llama.cpp context of {self.n_ctx}")
        llm.reset()
        lc.llama_memory_clear(lc.llama_get_memory(llm.ctx), True)
        out = np.empty((n, self.n_vocab), dtype=np.float32)
        step = llm.n_batch
        batch = lc.llama_batch_init(step, 0, 1)
        try:
            for b in range(0, n, step):
                chunk = ids[b:b + step]
                batch.n_tokens = len(chunk)
                for j, t in enumerate(chunk):
                    batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = t, b + j, 1, True
                    batch.seq_id[j][0] = 0
                if lc.llama_decode(llm.ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")
                ptr = lc.llama_get_logits(llm.ctx)
                out[b:b + len(chunk)] = np.ctypeslib.as_array(ptr, shape=(len(chunk) * self.n_vocab,)).reshape(
                    len(chunk), self.n_vocab)
        finally:
            lc.llama_batch_free(batch)
            lc.llama_memory_clear(lc.llama_get_memory(llm.ctx), True)
        return out


class LlamaCppGenerator(Generator):
    """A causal-LM generator whose prompts, controls and info come from ``inner`` and whose tokens come from
    llama.cpp (see the module docstring)."""

    def __init__(self, inner: CausalLMGenerator, engine: LlamaCppModel, stop_ids: set[int], top_k: int = 50,
                 model=None):
        super().__init__(dict(inner.info) | {"backend": "llama-cpp", "gguf": str(engine.files.model),
                                             "gguf_type": engine.type, "precision": f"gguf-{engine.type}"}
                         | ({"gguf_lora": str(engine.files.lora)} if engine.files.lora else {}),
                         inner.default_settings, inner.source_dir)
        self.inner, self.engine, self.stop_ids, self.top_k = inner, engine, stop_ids, top_k
        self.name, self.tokenizer, self.model = inner.name, inner.tokenizer, model
        self.gated = hasattr(inner, "gate_values")

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def save(self, run_dir):
        return self.inner.save(run_dir)

    def step_decoder(self):
        return None  # no iteration-level decoding: the server keeps its micro-batcher (serving/continuous.py)

    def _scale(self, c) -> float | None:
        return self.inner.gate_values([c.emotion], [c.gate])[0] if self.gated else None

    def chat(self, conversations, settings=None, controls=None, *, on_text=None, should_stop=None,
             progress: bool = False, desc: str | None = None) -> list[Reply]:
        s = settings or self.default_settings
        convs = [list(c) for c in conversations]
        ctrls = self.inner.resolve_controls(convs, controls_list(len(convs), controls))
        prompts = [self.inner.prompt(m, c, s) for m, c in zip(convs, ctrls)]
        outs = self.complete(prompts, s, [self._scale(c) for c in ctrls], on_text=on_text, should_stop=should_stop,
                             progress=progress, desc=desc)
        return [Reply(o.text, o.prompt_tokens, o.new_tokens, o.finish_reason, self.inner.reply_info(c))
                for o, c in zip(outs, ctrls)]

    def complete(self, prompts: Sequence[str], settings: GenerationSettings | None = None,
                 scales: Sequence[float | None] | None = None, *, on_text=None, should_stop=None,
                 progress: bool = False, desc: str | None = None) -> list[Output]:
        """``generate_texts`` for llama.cpp: a completion of every rendered prompt, one row at a time."""
        from tqdm.auto import tqdm

        s = settings or self.default_settings
        tok, pad = self.tokenizer, self.tokenizer.pad_token_id
        out = []
        for i in tqdm(range(len(prompts)), desc=desc or f"generating ({self.name}, llama.cpp)", disable=not progress,
                      unit="resp"):
            ids = tok(prompts[i], add_special_tokens=False)["input_ids"]
            self.engine.set_scale(scales[i] if scales is not None else None)
            streamer = RowStreamer(tok, [i], on_text, skip_prompt=False) if on_text is not None else None
            put = (lambda t, st=streamer: st.put(np.array([[t]]))) if streamer is not None else None
            stop = (lambda i=i: bool(should_stop(i))) if should_stop is not None else None
            new, cancelled = self.engine.generate(ids, s, self.stop_ids, self.top_k, put, stop)
            if streamer is not None:
                streamer.end()
            n_new = sum(1 for t in new if t != pad) if pad is not None else len(new)
            finish = "cancelled" if cancelled else ("length" if n_new >= s.max_new_tokens else "stop")
            out.append(Output(tok.decode(new, skip_special_tokens=True).strip(), len(ids), n_new, finish))
        return out

    def score(self, examples, controls=None, batch_size: int = 8, progress: bool = False,
              max_length: int = 512) -> list[TokenScore]:
        """Like ``CausalLMGenerator.score`` (same rows and labels), the logits from llama.cpp."""
        from tqdm.auto import tqdm

        from empathkit.models.encoding import IGNORE, encode_example

        ctrls = self.example_controls(examples, controls)
        out = []
        for ex, c in tqdm(list(zip(examples, ctrls)), desc=f"scoring ({self.name}, llama.cpp)", disable=not progress):
            row = encode_example(self.tokenizer, ex, self.inner.system_prompt(c), max_length)
            self.engine.set_scale(self._scale(c))
            labels = np.asarray(row["labels"][1:])
            keep = labels != IGNORE
            lg = self.engine.logits(row["input_ids"])[:-1][keep].astype(np.float64)
            mx = lg.max(axis=1, keepdims=True)
            lse = (mx[:, 0] + np.log(np.exp(lg - mx).sum(axis=1)))
            out.append(TokenScore(float((lse - lg[np.arange(len(lg)), labels[keep]]).sum()), int(keep.sum())))
        self.engine.llm.reset()
        return out


def with_backend(generator, backend: str | None = "transformers", gguf: str | Path | None = None, *,
                 threads: int | None = None, n_ctx: int | None = None, keep_model: bool = False):
    """``generator`` itself for ``backend`` transformers / None; for ``llama-cpp`` a :class:`LlamaCppGenerator` on
    :func:`resolve_gguf`'s file(s). ``threads``: llama.cpp threads (default: torch's). The wrapped generator's
    torch model is released (``keep_model=False``) once its stop tokens and context length are read."""
    if backend in (None, "transformers"):
        return generator
    if backend != "llama-cpp":
        raise ConfigError(f"generation.backend: unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    if not isinstance(generator, CausalLMGenerator):
        raise ConfigError(f"generation.backend=llama-cpp runs causal-LM methods (prompt, sft, empo, ecg-lora); "
                          f"{generator.name!r} is not one")
    if type(generator).conditioning is not CausalLMGenerator.conditioning and not hasattr(generator, "gate_values"):
        raise ConfigError(f"generation.backend=llama-cpp: {generator.name!r} conditions its model per batch in a way "
                          "a GGUF file cannot carry")
    import torch

    from empathkit.models.chat import context_window

    files = resolve_gguf(generator, gguf)
    if generator.tokenizer.pad_token_id is None:
        raise ConfigError(f"generation.backend=llama-cpp: the {generator.name!r} tokenizer has no pad token")
    model, tok = generator.model, generator.tokenizer
    gc = getattr(model, "generation_config", None)
    eos = getattr(gc, "eos_token_id", None)
    eos = tok.eos_token_id if eos is None else eos
    stop_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    top_k = int(getattr(gc, "top_k", None) or 50)
    ctx = n_ctx or min(context_window(model, tok) or MAX_CTX, MAX_CTX)
    engine = LlamaCppModel(files, ctx, threads or torch.get_num_threads())
    if not keep_model:
        generator.model = None  # only the tokenizer and the method's hooks are used from here on
    gen = LlamaCppGenerator(generator, engine, stop_ids, top_k, model=model if keep_model else None)
    log.info("llama.cpp backend: %s (%s)%s", files.model, engine.type, f" + {files.lora}" if files.lora else "")
    return gen


def info() -> dict[str, Any]:
    """Whether the backend is available and which llama-cpp-python it would use."""
    try:
        import llama_cpp
    except ImportError:
        return {"available": False, "pin": PIN}
    return {"available": True, "version": llama_cpp.__version__, "pin": PIN}
