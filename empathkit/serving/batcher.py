"""Asyncio micro-batcher: concurrent chat requests — streamed or not — are collected for up to ``max_wait_ms`` (or
until ``max_batch`` are waiting) and answered with ONE batched ``Generator.chat`` call in a single worker thread.

This is the ``micro`` scheduler (``ServerSettings.scheduler``). The default, ``continuous``
(:mod:`empathkit.serving.continuous`), subclasses it: same queue, deadlines, cancellation, stop strings, streaming
and trimming (:meth:`MicroBatcher._stop_text`, :meth:`MicroBatcher._result`), but requests join and leave the
running batch between decoding steps instead of waiting for the whole batch that was running when they arrived.
Generators without step-level decoding (ECG-LoRA, ReflectDiffu, seq2seq / FiD, …) are micro-batched either way.

The path of a request: ``server.py`` → :meth:`MicroBatcher.submit` (bounded queue) → the worker collects a batch →
one batched emotion detection (``EmotionDetector.detect`` over each conversation's whole context) → one
``Generator.chat(conversations, settings, controls, on_text=…, should_stop=…)`` per group of identical settings →
each row's text deltas go to its own job (:attr:`ChatJob.deltas`, an ``asyncio.Queue`` fed with
``loop.call_soon_threadsafe``) and its :class:`ChatResult` to the job's future.

- **Only the Generator**: the batcher never builds prompts, never touches ``generator.model`` / ``.tokenizer`` and
  never calls ``model.generate``; token counts, finish reasons and method info (``Reply.info``: ECG-LoRA's gate,
  a predicted emotion, exemplars, …) come from the :class:`~empathkit.types.Reply`.
- **Bounded**: at most ``queue_size`` requests wait; :meth:`MicroBatcher.submit` raises :class:`QueueFull` beyond that
  (the server answers 429) instead of letting latency grow without limit.
- **One model thread**: every generation runs in one ``ThreadPoolExecutor(max_workers=1)``, so the model is never
  used from two threads and torch gets every core for one batch.
- **Batch compatibility**: ``Generator.chat`` takes one ``GenerationSettings`` per call, so a collected batch is split
  into groups with identical settings (clients using the same decoding settings — the usual case — share a batch).
  Streaming is not a setting: streamed and non-streamed requests with the same settings share one call.
- **Streaming within the batch**: ``on_text(row, delta)`` feeds the row's :class:`StopText`, which cuts the text at
  the first ``stop`` string and holds back text that may still turn into one (and trailing whitespace, which the
  final reply drops); what is safe to show goes to the job's queue. Rows without streaming or stop strings are
  ignored there (no ``on_text`` at all when no row needs it).
- **Replies that end cleanly**: a reply cut by the token budget (``finish_reason == "length"``) is trimmed to its
  last complete sentence (:func:`empathkit.models.trim.trim_to_sentence`; ``MicroBatcher(trim=False)`` keeps it
  whole). The finish reason stays ``"length"`` and :attr:`ChatResult.info` gets ``trim``: ``{"text",
  "untrimmed_text", "removed", "finish_reason": "length", "stream_corrected"}`` (the server returns it in its
  ``empathkit`` metadata). While a streamed row is within :data:`HOLD_TOKENS` of its budget, the text after its last
  complete sentence is held back, so the trimmed tail is normally never sent; when it was (``stream_corrected``),
  the final event's ``trim.text`` is the reply to show.
- **Cancellation**: ``should_stop(row)`` ends a row whose client went away, whose request timed out, or whose text
  reached a stop string; the other rows of the batch go on.
- **Timeouts** are enforced by the caller (:meth:`MicroBatcher.wait`, :meth:`MicroBatcher.next_delta`): a job that
  times out while queued is skipped; one that is generating is cancelled at the next decoding step.

The batching loop is hand-written (a few dozen lines): no maintained library does request micro-batching for an
in-process ``generate`` call without bringing its own server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

from empathkit.errors import EmpathkitError
from empathkit.methods.base import Generator
from empathkit.models.generation import GenerationSettings
from empathkit.models.trim import complete_prefix, trim_to_sentence
from empathkit.serving.emotion import NONE, EmotionDetector, conversation_context
from empathkit.types import Controls, Reply

log = logging.getLogger(__name__)

END = None  # the last item of a job's delta queue
# a streamed row this close to its token budget (counted in text deltas, about one per token; at most the second
# half of the budget) sends only complete sentences, so a reply trimmed at the budget was not sent past its last one
HOLD_TOKENS = 24


class QueueFull(EmpathkitError):
    """Too many requests are waiting; retry later (HTTP 429)."""


class JobTimeout(EmpathkitError):
    """A request was not answered within its timeout (HTTP 504)."""


@dataclass
class ChatResult:
    text: str  # cut at the first stop string
    emotion: str
    emotion_prob: float | None
    emotion_source: str  # "request" | "classifier" | "none"
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (end of turn or a stop string) | "length" | "cancelled"
    batch_size: int
    info: dict[str, Any] = field(default_factory=dict)  # Reply.info: what the method did (gate, predicted emotion…)


@dataclass
class ChatJob:
    messages: list[dict[str, str]]
    settings: GenerationSettings
    emotion: str | None = None  # forced by the request (a label or "none"); None = detect
    gate: float | None = None  # forced ECG-LoRA gate; None = the method decides
    stream: bool = False  # deliver text deltas to ``deltas`` while generating
    stops: Sequence[str] = ()  # the reply ends before the first of these
    # filled in by the batcher
    future: asyncio.Future | None = None
    deltas: asyncio.Queue | None = None  # streamed jobs: str deltas, then END
    started: asyncio.Event = field(default_factory=asyncio.Event)  # set when its batch starts generating
    emotion_info: tuple[str, float | None, str] | None = None  # (label, prob, source)
    batch_size: int | None = None  # rows of the Generator.chat call it runs in
    cancelled: bool = False  # client gone / timed out: skip if queued, stop the row if generating
    enqueued_at: float = field(default_factory=time.monotonic)


def apply_stops(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the first stop string, and whether one occurred."""
    cut = min((text.find(s) for s in stops if s and s in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class StopText:
    """The text of one row as it is generated (worker thread): :meth:`feed` returns the part that is safe to send.

    Held back until the next delta decides: a suffix that is the beginning of a stop string, and trailing whitespace
    (the final ``Reply.text`` is stripped, so a streamed reply ends exactly like the non-streamed one). Once a stop
    string appears, :attr:`hit` is set (the row's ``should_stop`` ends it) and nothing more is sent."""

    def __init__(self, stops: Sequence[str] = (), budget: int | None = None, hold_tokens: int = HOLD_TOKENS):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0  # characters of ``text`` already sent
        self.hit = False
        # with a token ``budget``: within ``hold_tokens`` deltas of it (at most its second half, so a short budget
        # still streams), hold back text after the last full sentence
        self.hold_from = None if budget is None else budget - max(0, min(hold_tokens, budget // 2))
        self.steps = 0

    @property
    def holding_sentences(self) -> bool:
        return self.hold_from is not None and self.steps >= self.hold_from

    def feed(self, delta: str) -> str:
        if self.hit or not delta:
            return ""
        self.steps += 1
        self.text += delta
        text, self.hit = apply_stops(self.text, self.stops)
        self.text = text
        safe = len(text) if self.hit else len(text) - self._held(text)
        out = text[self.sent:safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return out

    def _held(self, text: str) -> int:
        hold = len(text) - len(text.rstrip())
        if self.holding_sentences:
            hold = max(hold, len(text) - len(complete_prefix(text)))
        for s in self.stops:
            for k in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:k]):
                    hold = k
                    break
        return hold

    @property
    def sent_text(self) -> str:
        return self.text[:self.sent]

    def finish(self, final: str, trimmed: bool = False) -> str:
        """What is still to send once the row's final text is known (normally what was held back; everything for a
        generator that ignores ``on_text``). ``trimmed``: ``final`` was cut back on purpose (no warning when more
        had been sent; the caller reports the correction)."""
        sent = self.text[:self.sent]
        if final.startswith(sent):
            self.sent = len(final)
            return final[len(sent):]
        if trimmed:
            return ""
        log.warning("streamed text diverged from the final reply (%r vs %r); the stream keeps what it sent",
                    sent[-40:], final[:len(sent)][-40:])
        return ""


def _settings_key(s: GenerationSettings) -> str:
    return json.dumps(s.model_dump(exclude={"batch_size"}), sort_keys=True)


def _api_source(source: str) -> str:
    """An ``EmotionGuess.source`` ("classifier:<name>", "none", "request") as the API reports it."""
    return "classifier" if source.startswith("classifier") else source


class MicroBatcher:
    def __init__(self, generator: Generator, emotion_detector: EmotionDetector | None = None, *, max_batch: int = 8,
                 max_wait_ms: float = 20.0, queue_size: int = 64, trim: bool = True):
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and queue_size must be >= 1 and max_wait_ms >= 0")
        self.generator = generator
        self.trim = trim  # cut replies that hit the token budget back to their last complete sentence
        self.hold_tokens = HOLD_TOKENS  # streamed rows this close to the budget send whole sentences only
        self.detector = emotion_detector or EmotionDetector(None)
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000.0, queue_size
        self._queue: asyncio.Queue[ChatJob] | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self.stats: dict[str, Any] = {
            "requests": 0,  # accepted by submit()
            "batches": 0,  # Generator.chat calls
            "rows": 0,  # rows over all batches
            "mean_batch": 0.0,  # rows / batches
            "largest_batch": 0,
            "streamed": 0,  # streamed rows generated
            "streamed_batched": 0,  # … of them in a batch with at least one other row
            "cancelled": 0,  # rows ended early because the client went away or timed out
            "rejected": 0,  # 429
            "timeouts": 0,  # 504 (or a timeout error event in a stream)
        }

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
            self._fail(self._queue.get_nowait(), QueueFull("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    # -- submitting and waiting (event loop) -----------------------------------------------------------------------
    def submit(self, job: ChatJob) -> ChatJob:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        job.future = self._loop.create_future()
        if job.stream:
            job.deltas = asyncio.Queue()
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            self.stats["rejected"] += 1
            raise QueueFull(f"the request queue is full ({self.queue_size} waiting); retry later") from None
        self.stats["requests"] += 1
        return job

    def _timed_out(self, job: ChatJob, msg: str) -> JobTimeout:
        job.cancelled = True
        self.stats["timeouts"] += 1
        return JobTimeout(msg)

    async def wait(self, job: ChatJob, timeout: float | None) -> ChatResult:
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.CancelledError:  # the client went away: skip or stop the job
            job.cancelled = True
            raise
        except asyncio.TimeoutError:
            raise self._timed_out(job, f"no reply within {timeout:g} s") from None

    async def wait_started(self, job: ChatJob, timeout: float | None) -> None:
        """For streaming: wait until the job's batch starts (emotion and batch size known, text about to flow)."""
        waiter = asyncio.ensure_future(job.started.wait())
        try:
            done, _ = await asyncio.wait({waiter, job.future}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            waiter.cancel()
            job.cancelled = True
            raise
        if not done:
            waiter.cancel()
            raise self._timed_out(job, f"request not started within {timeout:g} s")
        if job.future.done() and not job.started.is_set():
            waiter.cancel()
            job.future.result()  # raises the batch's error

    async def next_delta(self, job: ChatJob, deadline: float | None) -> str | None:
        """The next text delta of a streamed job, or ``None`` (END) when its reply is complete; raises
        :class:`JobTimeout` after ``deadline`` (``time.monotonic()``) and cancels the row."""
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return await asyncio.wait_for(job.deltas.get(), timeout)
        except asyncio.TimeoutError:
            raise self._timed_out(job, "generation timed out") from None

    # -- the worker (event loop) ---------------------------------------------------------------------------------
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

    def _fail(self, job: ChatJob, exc: BaseException) -> None:
        if job.future is not None and not job.future.done():
            job.future.set_exception(exc)
            if job.cancelled or job.stream:
                job.future.exception()  # nobody may await it: mark it retrieved (no "never retrieved" warning)
        if job.deltas is not None:
            job.deltas.put_nowait(END)

    async def _run_forever(self) -> None:
        while True:
            batch = await self._collect()
            live = [j for j in batch if not j.cancelled]
            if not live:
                continue
            self.in_flight = len(live)
            try:
                try:
                    await self._loop.run_in_executor(self._executor, self._detect, live)
                except Exception as e:  # noqa: BLE001 - EmotionDetector never raises; a stand-in might
                    log.exception("emotion detection failed for a batch of %d", len(live))
                    for j in live:
                        self._fail(j, e)
                    continue
                groups: dict[str, list[ChatJob]] = {}
                for j in live:
                    groups.setdefault(_settings_key(j.settings), []).append(j)
                for jobs in groups.values():
                    jobs = [j for j in jobs if not j.cancelled]
                    if jobs:
                        await self._run_group(jobs)
            finally:
                self.in_flight = 0

    async def _run_group(self, jobs: list[ChatJob]) -> None:
        n = len(jobs)
        st = self.stats
        st["batches"] += 1
        st["rows"] += n
        st["mean_batch"] = round(st["rows"] / st["batches"], 3)
        st["largest_batch"] = max(st["largest_batch"], n)
        streamed = sum(j.stream for j in jobs)
        st["streamed"] += streamed
        if n > 1:
            st["streamed_batched"] += streamed
        for j in jobs:
            j.batch_size = n
            j.started.set()
        try:
            results = await self._loop.run_in_executor(self._executor, self._generate, jobs)
        except Exception as e:  # noqa: BLE001 - a failed batch must not stop the server
            log.exception("generation failed for a batch of %d", n)
            for j in jobs:
                self._fail(j, e)
            return
        for j, r in zip(jobs, results):
            if r.finish_reason == "cancelled":
                st["cancelled"] += 1
            if not j.future.done():
                j.future.set_result(r)
            if j.deltas is not None:
                j.deltas.put_nowait(END)  # after every delta: call_soon_threadsafe callbacks ran before this resumed

    # -- runs in the worker thread -------------------------------------------------------------------------------
    def _detect(self, jobs: list[ChatJob]) -> None:
        """One batched detection over the whole context of every job that does not force an emotion."""
        todo = [j for j in jobs if j.emotion is None]
        for j in jobs:
            if j.emotion is not None:
                j.emotion_info = (j.emotion, None, "request")
        for j, g in zip(todo, self.detector.detect([conversation_context(j.messages) for j in todo])):
            j.emotion_info = (g.label, g.prob, _api_source(g.source))

    @staticmethod
    def controls(job: ChatJob) -> Controls:
        emo, _, src = job.emotion_info or (NONE, None, "none")
        if emo == NONE:  # nothing to condition on ("none" forced or nothing detected): the method decides
            return Controls(emotion_source="request" if src == "request" else None, gate=job.gate)
        return Controls(emotion=emo, emotion_source=src, gate=job.gate)

    def _push(self, job: ChatJob, text: str) -> None:
        if text and not job.cancelled:
            try:
                self._loop.call_soon_threadsafe(job.deltas.put_nowait, text)
            except RuntimeError:  # the event loop closed (server shutting down mid-batch): nobody is listening
                job.cancelled = True

    def _stop_text(self, job: ChatJob, budget: int | None) -> StopText | None:
        """The row's streamed / stop-string text tracker (``None`` when it needs neither)."""
        if not (job.stream or job.stops):
            return None
        return StopText(job.stops, budget if (job.stream and self.trim) else None, self.hold_tokens)

    def _generate(self, jobs: list[ChatJob]) -> list[ChatResult]:
        settings = jobs[0].settings.model_copy(update={"batch_size": len(jobs)})
        rows = [self._stop_text(j, settings.max_new_tokens) for j in jobs]

        def on_text(i: int, delta: str) -> None:
            row = rows[i]
            if row is not None:
                out = row.feed(delta)
                if jobs[i].stream:
                    self._push(jobs[i], out)

        def should_stop(i: int) -> bool:
            return jobs[i].cancelled or (rows[i] is not None and rows[i].hit)

        replies: list[Reply] = self.generator.chat(
            [j.messages for j in jobs], settings, [self.controls(j) for j in jobs],
            on_text=on_text if any(r is not None for r in rows) else None, should_stop=should_stop)
        if len(replies) != len(jobs):
            raise RuntimeError(f"{type(self.generator).__name__}.chat returned {len(replies)} replies for "
                               f"{len(jobs)} conversations")
        return [self._result(j, r, row, len(jobs)) for j, r, row in zip(jobs, replies, rows)]

    def _result(self, j: ChatJob, r: Reply, row: StopText | None, batch_size: int) -> ChatResult:
        """A row's reply as the server returns it (worker thread): stop strings applied, a reply cut by the budget
        trimmed to its last sentence, the held-back streamed text sent, the emotion and method info attached."""
        text, hit = apply_stops(r.text, j.stops)
        hit = hit or (row is not None and row.hit)  # e.g. a whitespace stop string the final strip removed
        finish = "stop" if hit else r.finish_reason
        info = dict(r.info)
        final = text
        if self.trim and finish == "length":
            t = trim_to_sentence(text)
            if t.changed:
                final = t.text
                info["trim"] = {"text": final, "untrimmed_text": text, "removed": t.removed,
                                "finish_reason": "length", "marked": t.marked,
                                "stream_corrected": bool(j.stream and row is not None
                                                         and not final.startswith(row.sent_text))}
        if j.stream:
            self._push(j, row.finish(final, trimmed="trim" in info))
        emo, prob, src = j.emotion_info or (NONE, None, "none")
        if src == "classifier" and getattr(self.detector, "description", None):  # which classifier it was
            info.setdefault("emotion_classifier", self.detector.description)
        return ChatResult(final, emo, prob, src, r.prompt_tokens, r.completion_tokens, finish, batch_size, info)
