"""Asyncio micro-batcher: concurrent chat requests are collected for up to ``max_wait_ms`` (or until ``max_batch``
are waiting) and answered with ONE batched ``Generator.chat`` call in a single worker thread.

- **Bounded**: at most ``queue_size`` requests wait; :meth:`MicroBatcher.submit` raises :class:`QueueFull` beyond that
  (the server answers 429) instead of letting latency grow without limit.
- **One model thread**: every generation (batched or streamed) runs in one ``ThreadPoolExecutor(max_workers=1)``, so
  the model is never used from two threads and torch gets both cores for one batch.
- **Batch compatibility**: ``generate_texts`` takes one ``GenerationSettings`` per call, so a collected batch is split
  into groups with identical settings (clients using the same decoding settings — the usual case — share a batch).
- **Emotion detection** of each job's latest user turn is batched too, inside the worker, unless the request forces an
  emotion; the detected (or forced) emotion and the optional gate go to ``Generator.chat(emotions=, gates=)``.
- **Token streaming** jobs (``job.streamer`` set, see ``server.py``) run alone (batch of one) with a
  ``transformers.AsyncTextIteratorStreamer``; a stopping criterion ends them early when the client goes away.
- **Timeouts** are enforced by the caller (:meth:`MicroBatcher.wait`): a job that times out while still queued is
  skipped by the worker; one already generating finishes in the background and its result is dropped.

The batching loop is hand-written (a few dozen lines): no maintained library does request micro-batching for an
in-process HF ``generate`` call without bringing its own server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from empathkit.errors import EmpathkitError
from empathkit.methods.base import Generator
from empathkit.models.generation import GenerationSettings
from empathkit.types import Controls
from empathkit.serving.emotion import NONE, EmotionDetector, last_user_text

log = logging.getLogger(__name__)


class QueueFull(EmpathkitError):
    """Too many requests are waiting; retry later (HTTP 429)."""


class JobTimeout(EmpathkitError):
    """A request was not answered within its timeout (HTTP 504)."""


@dataclass
class ChatResult:
    text: str
    emotion: str
    emotion_prob: float | None
    emotion_source: str  # "request" | "classifier" | "none"
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" | "length"
    batch_size: int


@dataclass
class ChatJob:
    messages: list[dict[str, str]]
    settings: GenerationSettings
    emotion: str | None = None  # forced by the request; None = detect
    gate: float | None = None  # forced ECG-LoRA gate; None = the method decides
    streamer: Any = None  # an AsyncTextIteratorStreamer → token streaming (runs alone)
    # filled in by the batcher
    future: asyncio.Future | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    emotion_info: tuple[str, float | None, str] | None = None
    cancelled: bool = False
    enqueued_at: float = field(default_factory=time.monotonic)


def supports_token_streaming(generator: Generator) -> bool:
    """Every ``Generator`` streams through ``chat(on_text=...)``."""
    return True


def _settings_key(s: GenerationSettings) -> str:
    return json.dumps(s.model_dump(exclude={"batch_size"}), sort_keys=True)


class MicroBatcher:
    def __init__(self, generator: Generator, emotion_detector: EmotionDetector | None = None, *, max_batch: int = 8,
                 max_wait_ms: float = 20.0, queue_size: int = 64):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_ms >= 0")
        self.generator = generator
        self.detector = emotion_detector or EmotionDetector(None)
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000.0, queue_size
        self._queue: asyncio.Queue[ChatJob] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self.stats = {"requests": 0, "batches": 0, "rejected": 0, "timeouts": 0, "largest_batch": 0}

    # -- lifecycle -----------------------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self.queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="empathkit-generate")
        self._task = asyncio.create_task(self._run_forever(), name="empathkit-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if job.future is not None and not job.future.done():
                job.future.set_exception(QueueFull("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -- submitting ----------------------------------------------------------------------------------------------
    def submit(self, job: ChatJob) -> ChatJob:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        job.future = self._loop.create_future()
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats["rejected"] += 1
            raise QueueFull(f"the request queue is full ({self.queue_size} waiting); retry later") from None
        self.stats["requests"] += 1
        return job

    async def wait(self, job: ChatJob, timeout: float | None) -> ChatResult:
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.CancelledError:  # the client went away: skip the job if it is still queued
            job.cancelled = True
            raise
        except asyncio.TimeoutError:
            job.cancelled = True
            self.stats["timeouts"] += 1
            raise JobTimeout(f"no reply within {timeout:g} s") from None

    async def wait_started(self, job: ChatJob, timeout: float | None) -> None:
        """For streaming: wait until the worker picked the job up (emotion known, tokens about to flow)."""
        waiter = asyncio.ensure_future(job.started.wait())
        try:
            done, _ = await asyncio.wait({waiter, job.future}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiter.cancel()
            job.cancelled = True
            raise
        if not done:
            waiter.cancel()
            job.cancelled = True
            self.stats["timeouts"] += 1
            raise JobTimeout(f"request not started within {timeout:g} s")
        if job.future.done() and job.future.exception() is not None:
            waiter.cancel()
            raise job.future.exception()

    # -- the worker ----------------------------------------------------------------------------------------------
    async def _collect(self) -> list[ChatJob]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        deadline = self._loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run_forever(self) -> None:
        while True:
            batch = await self._collect()
            live = [j for j in batch if not j.cancelled]
            self.in_flight = len(live)
            groups: dict[str, list[ChatJob]] = {}
            for j in live:
                if j.streamer is None:
                    groups.setdefault(_settings_key(j.settings), []).append(j)
            work: list[tuple[Any, list[ChatJob]]] = [(self._generate_batch, g) for g in groups.values()]
            work += [(self._generate_stream, [j]) for j in live if j.streamer is not None]
            for fn, jobs in work:
                jobs = [j for j in jobs if not j.cancelled]
                if not jobs:
                    continue
                self.stats["batches"] += 1
                self.stats["largest_batch"] = max(self.stats["largest_batch"], len(jobs))
                try:
                    results = await self._loop.run_in_executor(self._executor, fn, jobs)
                except Exception as e:  # noqa: BLE001 - a failed batch must not stop the server
                    log.exception("generation failed for a batch of %d", len(jobs))
                    for j in jobs:
                        if not j.future.done():
                            j.future.set_exception(e)
                    continue
                for j, r in zip(jobs, results):
                    if not j.future.done():
                        j.future.set_result(r)
            self.in_flight = 0

    # -- runs in the worker thread -------------------------------------------------------------------------------
    def _emotions(self, jobs: list[ChatJob]) -> None:
        todo = [j for j in jobs if j.emotion is None]
        for j in jobs:
            if j.emotion is not None:
                j.emotion_info = (j.emotion, None, "request")
        for j, (label, prob) in zip(todo, self.detector.detect([last_user_text(j.messages) for j in todo])):
            j.emotion_info = (label, prob, "classifier" if self.detector.available else "none")
        for j in jobs:
            self._loop.call_soon_threadsafe(j.started.set)

    def _result(self, job: ChatJob, text: str, n_prompt: int, n_new: int, batch_size: int) -> ChatResult:
        emo, prob, src = job.emotion_info or (NONE, None, "none")
        finish = "length" if n_new >= job.settings.max_new_tokens else "stop"
        return ChatResult(text, emo, prob, src, n_prompt, n_new, finish, batch_size)

    def _count(self, text: str) -> int:
        return len(self.generator.tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def _controls(jobs: list[ChatJob]) -> list[Controls]:
        out = []
        for j in jobs:
            emo, _, src = j.emotion_info or (NONE, None, "none")
            out.append(Controls(emotion=None if emo == NONE else emo, emotion_source=src, gate=j.gate))
        return out

    def _generate_batch(self, jobs: list[ChatJob]) -> list[ChatResult]:
        self._emotions(jobs)
        settings = jobs[0].settings.model_copy(update={"batch_size": len(jobs)})
        replies = self.generator.chat([j.messages for j in jobs], settings, self._controls(jobs))
        return [self._result(j, r.text, r.prompt_tokens, r.completion_tokens, len(jobs)) for j, r in zip(jobs, replies)]

    def _generate_stream(self, jobs: list[ChatJob]) -> list[ChatResult]:
        (job,) = jobs
        self._emotions(jobs)
        try:
            (r,) = self.generator.chat([job.messages], job.settings, self._controls(jobs),
                                       on_text=lambda i, delta: job.streamer.on_finalized_text(delta),
                                       should_stop=lambda i: job.cancelled)
        finally:
            job.streamer.end()  # unblock the consumer; an exception goes to the job's future
        return [self._result(job, r.text, r.prompt_tokens, r.completion_tokens, 1)]
