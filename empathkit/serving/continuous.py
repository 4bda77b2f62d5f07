"""Continuous batching (iteration-level scheduling): requests join the running batch between decoding steps and
leave it as soon as they finish, instead of waiting for the whole batch that was running when they arrived.

:class:`ContinuousBatcher` is a :class:`~empathkit.serving.batcher.MicroBatcher` with another worker loop; the
bounded queue (429), deadlines (504), cancellation when a client goes away, SIGTERM (the server cancels every job;
rows stop at their next step, queued jobs get 503), stop strings, streaming and the trimming of replies cut by the
budget are the micro-batcher's, unchanged. The loop:

1. (event loop) nothing running: wait for a request, then up to ``max_wait_ms`` for others (as the micro-batcher
   does); something running: take what is queued now, up to ``max_batch`` rows in all;
2. (model thread, :meth:`ContinuousBatcher._tick`) detect the newcomers' emotions, ask the generator for their
   prompts, prefill them and merge them into the running batch
   (:meth:`StepDecoder.add <empathkit.models.stepping.StepDecoder.add>`), then decode step after step
   (:meth:`StepDecoder.step <empathkit.models.stepping.StepDecoder.step>`) until a queued request can join, the
   batch is empty or the batcher stops. Rows that finish leave the batch at once; deltas, "started" and replies go
   to the event loop with ``call_soon_threadsafe``, so the steps never wait for the event loop (which, with 16
   streams to write, is often busy or descheduled on a shared 2-core machine);
3. repeat.

**Which generators**: step-level decoding needs a plain causal-LM step. The generator advertises it with
``Generator.step_decoder() -> StepDecoder | None`` (``None``: keep the micro-batcher). Methods whose generation is not
a plain step — ECG-LoRA's per-row gate (a ``conditioning`` context around the whole batch), ReflectDiffu (a model of
its own), seq2seq / FiD (encoder–decoder), REG's causal generator (it rewrites controls in its ``chat``) — return
``None`` and are served by the micro-batcher; :attr:`ContinuousBatcher.scheduler` says which one is in effect (the
server reports it in ``/health``). Until ``Generator.step_decoder`` exists in ``methods/base.py`` /
``methods/causal.py`` (requested from the coordinator), :func:`step_decoder` derives it here for a
``CausalLMGenerator`` that overrides neither ``chat`` nor ``conditioning``. Either way the prompts, resolved controls
and reply info come from the generator (``resolve_controls`` → ``prompt`` → ``reply_info``): the batcher never
builds prompts.

**Settings**: every row keeps its own ``GenerationSettings`` (budget, repetition penalty, greedy or sampling, seed),
so unlike the micro-batcher requests with different settings share one running batch. ``generation.precision`` is
the loaded model's (applied at load); the shared-prefix cache is the model's ``PrefixStore`` (a newcomer's prompt
reuses the prefilled KV of its common prefix with the previous prompt — the system prompt and template header).

**Stats** (``/health``): ``batches`` counts decoding steps and ``rows`` row-steps, so ``mean_batch`` is the mean
number of rows per step (for the micro-batcher: rows per ``Generator.chat`` call); ``prefills`` counts admissions,
``streamed_batched`` streamed rows that shared a step with another row; ``ChatResult.batch_size`` is the most rows
the request shared a step with.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from empathkit.methods.base import Generator
from empathkit.models.stepping import Finished, StepDecoder
from empathkit.serving.batcher import END, ChatJob, ChatResult, MicroBatcher, QueueFull, StopText

log = logging.getLogger(__name__)


def step_decoder(generator: Generator) -> StepDecoder | None:
    """The generator's step-level decoder (``Generator.step_decoder()``), or ``None`` when it needs whole-batch
    generation (module docstring)."""
    hook = getattr(generator, "step_decoder", None)  # duck-typed generators without the hook: micro-batching
    return hook() if callable(hook) else None


class ContinuousBatcher(MicroBatcher):
    """Iteration-level scheduling over ``Generator.step_decoder()``; the micro-batcher's loop when the generator has
    none. Same constructor and interface as :class:`MicroBatcher`."""

    def __init__(self, generator: Generator, *args: Any, **kw: Any):
        super().__init__(generator, *args, **kw)
        self.decoder = step_decoder(generator)
        self.scheduler = "continuous" if self.decoder is not None else "micro"
        self._active: dict[int, ChatJob] = {}  # id(job) → job, admitted and not answered
        self._closing = False
        self.stats.update(prefills=0, steps=0)

    async def stop(self) -> None:
        self._closing = True  # the model thread ends its steps; rows still running are failed below
        await super().stop()
        for job in list(self._active.values()):
            self._fail(job, QueueFull("server is shutting down"))
        self._active.clear()
        self.in_flight = 0

    async def _run_forever(self) -> None:
        if self.decoder is None:
            return await super()._run_forever()
        while True:
            new = await self._admissions()
            try:
                await self._loop.run_in_executor(self._executor, self._tick, new)
            except Exception as e:  # noqa: BLE001 - a failed step must not stop the server
                log.exception("continuous batching step failed with %d rows", self.decoder.size)
                self.decoder.cancel_all()
                for job in list(self._active.values()) + new:
                    self._fail(job, e)
                self._active.clear()
            self.in_flight = self.decoder.size

    async def _admissions(self) -> list[ChatJob]:
        """Jobs to add before the next steps: block (collecting like the micro-batcher) only when nothing runs."""
        if self.decoder.size == 0:
            jobs = await self._collect()
        else:
            jobs = []
            while self.decoder.size + len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
        return [j for j in jobs if not j.cancelled]

    # -- event loop callbacks (scheduled from the model thread) ------------------------------------------------------
    def _started(self, jobs: list[ChatJob], rows: int) -> None:
        for j in jobs:
            j.batch_size = max(1, rows)
            j.started.set()
        self.in_flight = rows

    def _failed(self, job: ChatJob, exc: BaseException) -> None:
        self._active.pop(id(job), None)
        self._fail(job, exc)

    def _finished(self, job: ChatJob, r: ChatResult) -> None:
        st = self.stats
        self._active.pop(id(job), None)
        st["cancelled"] += r.finish_reason == "cancelled"
        if job.stream:
            st["streamed"] += 1
            st["streamed_batched"] += r.batch_size > 1
        if not job.future.done():
            job.future.set_result(r)
        if job.deltas is not None:
            job.deltas.put_nowait(END)  # after every delta: call_soon_threadsafe runs callbacks in order

    # -- runs in the worker thread -------------------------------------------------------------------------------
    def _tick(self, new: list[ChatJob]) -> None:
        """Admit ``new`` (emotion, the generator's prompts, prefill + merge), then decode step after step until the
        batch is empty, a queued request can join, or the batcher stops. Results go to the event loop as they come
        (``call_soon_threadsafe``): the steps never wait for the event loop."""
        dec = self.decoder
        if new:
            self._admit(new)
        st = self.stats
        while dec.size and not self._closing:
            rows = dec.size
            self._deliver(dec.step())
            st["steps"] += 1
            st["batches"] += 1
            st["rows"] += rows
            st["mean_batch"] = round(st["rows"] / st["batches"], 3)
            st["largest_batch"] = max(st["largest_batch"], rows)
            if self.queued and dec.size < self.max_batch:
                break  # let the waiting requests join at the next step
        self._call(setattr, self, "in_flight", dec.size)

    def _call(self, fn, *args) -> None:
        """Run ``fn(*args)`` on the event loop (in order with the streamed deltas)."""
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the event loop closed (shutting down): nobody is waiting any more
            self._closing = True

    def _admit(self, new: list[ChatJob]) -> None:
        dec, call = self.decoder, self._call
        self._detect(new)
        reqs = []
        for j in new:
            try:
                req = dec.requests([j.messages], j.settings, [self.controls(j)])[0]
            except Exception as e:  # noqa: BLE001 - one bad request (e.g. a template error) fails alone
                log.exception("preparing a request failed")
                call(self._failed, j, e)
                continue
            row = self._stop_text(j, j.settings.max_new_tokens)
            self._active[id(j)] = j
            req.handle = (j, row)
            req.should_stop = (lambda j=j, row=row: j.cancelled or (row is not None and row.hit))
            if row is not None:
                req.on_text = (lambda d, j=j, row=row: self._on_text(j, row, d))
            reqs.append(req)
        if not reqs:
            return
        try:
            done = dec.add(reqs)
        except Exception as e:  # noqa: BLE001 - a failed prefill fails its newcomers; running rows go on
            log.exception("prefill failed for %d new rows", len(reqs))
            for r in reqs:
                call(self._failed, r.handle[0], e)
            return
        self.stats["prefills"] += 1
        call(self._started, [r.handle[0] for r in reqs], dec.size + len(done))
        self._deliver(done)

    def _deliver(self, done: list[Finished]) -> None:
        for f in done:
            job, row = f.request.handle
            self._call(self._finished, job, self._result(job, f.reply, row, f.largest_batch))

    def _on_text(self, job: ChatJob, row: StopText, delta: str) -> None:
        out = row.feed(delta)
        if job.stream:
            self._push(job, out)
