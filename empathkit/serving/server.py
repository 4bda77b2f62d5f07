"""FastAPI app: an OpenAI-compatible chat API over any empathkit ``Generator``, a health check and the web chat page.

Routes: ``POST /v1/chat/completions`` (JSON or SSE stream), ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /health``, ``GET /`` (static/index.html). Errors always use the OpenAI shape
``{"error": {"message", "type", "param", "code"}}`` with a 4xx code for bad requests (FastAPI's 422 handler is
replaced by a 400 one), 401 for a missing/wrong API key, 404 for an unknown model, 413 for an oversized body,
429 when the request queue is full and 504 on timeout.

Every reply carries an ``empathkit`` object (in the JSON body; in a stream in the first chunk, and complete in the
chunk with the ``finish_reason``): ``{"emotion": {"label", "prob", "source"}, "safety": {"flagged", "category", ...},
"batch_size", "gate", **Reply.info}`` — the method's own reply info (ECG-LoRA's ``gate`` actually used, a
``predicted_emotion``, later ``exemplars`` / ``intent``) is merged in; the first chunk of a stream is sent before
generation, so it has the forced ``gate`` only.

The path of a request: validation → safety check → the scheduler (``ServerSettings.scheduler``):
:class:`~empathkit.serving.continuous.ContinuousBatcher` (default: the request joins the running batch at the next
decoding step and leaves it when done; generators without step-level decoding fall back to micro-batching) or
:class:`~empathkit.serving.batcher.MicroBatcher` (ONE batched ``Generator.chat(on_text=…, should_stop=…)`` for the
streamed and non-streamed requests with the same settings) → JSON, or SSE fed from the job's delta queue. This
module never builds prompts or touches a model or tokenizer: token counts come from ``Reply`` (and
``Generator.count_tokens`` for the safety replies).

Streaming (``stream: true``), ``ServerSettings.stream_mode``:
- ``tokens`` (default): text is sent as it is generated, batched with the other requests; ``stop`` strings are
  applied while streaming (nothing at or after a stop string is sent, and the row stops generating there). A client
  that disconnects ends its row only.
- ``chunks``: the finished reply is sent word by word (fewer, whole-word events; the generation call gets no
  ``on_text``). Rarely needed now that token streaming is batched too.

Security defaults: the CLI binds 127.0.0.1; with ``api_key`` set every ``/v1`` route needs ``Authorization: Bearer
<key>`` (``/``, ``/health`` stay open); the request body is capped at ``max_body_bytes``; nothing from a request is
ever used as a path, a pickle or code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from empathkit.annotate.highlight import message_reasons, preload_tagger
from empathkit.methods.base import Generator
from empathkit.models.generation import GenerationSettings
from empathkit.serving.batcher import ChatJob, ChatResult, JobTimeout, MicroBatcher, QueueFull
from empathkit.serving.continuous import ContinuousBatcher
from empathkit.serving.emotion import EmotionDetector, conversation_context
from empathkit.serving.runtime import BackgroundServer, BodyLimit, _validation_message, free_port, run  # noqa: F401
from empathkit.serving.limits import Rejected, TokenCounter, check_contents, fit_request, prompt_budget, \
    system_prompt_tokens
from empathkit.serving.safety import CATEGORIES, SafetyLayer, SafetyResult
from empathkit.serving.schemas import ChatCompletionRequest, error_body

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"


class ServerSettings(BaseModel):
    model_config = {"extra": "forbid"}

    model_id: str | None = Field(None, description="id shown in /v1/models; default 'empathkit-<method>'")
    api_key: str | None = Field(None, description="if set, /v1 routes need 'Authorization: Bearer <key>'")
    max_batch: int = Field(8, ge=1, le=256)
    max_wait_ms: float = Field(20.0, ge=0, le=5000)
    queue_size: int = Field(64, ge=1, le=100_000)
    timeout: float = Field(120.0, gt=0, description="seconds per request (queue wait + generation)")
    max_messages: int = Field(64, ge=1)
    max_input_chars: int = Field(16_000, ge=1, description="total characters over all messages")
    max_tokens_limit: int = Field(512, ge=1, description="largest accepted max_tokens")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_prompt_tokens: int | None = Field(
        None, ge=8, description="prompt token budget; default: the generator's max_prompt_tokens, never more than "
        "the model's context minus max_tokens")
    overflow: Literal["error", "truncate"] = Field(
        "error", description="a last user message over the token budget: error = 400 context_length_exceeded; "
        "truncate = clip it to its last tokens (reported in empathkit.truncation). Older turns over the budget are "
        "always dropped from the oldest (and reported)")
    tokenize_timeout: float = Field(2.0, gt=0, description="seconds allowed for counting a request's tokens")
    shutdown_grace: float = Field(3.0, ge=0, description="seconds SIGTERM waits for in-flight replies")
    stream_mode: Literal["tokens", "chunks"] = Field(
        "tokens", description="tokens: text as it is generated (batched with the other requests); chunks: the "
        "finished reply word by word")
    safety: bool = True
    highlight_reasons: bool = Field(
        True, description="add the emotion-reason words of the last user message to the metadata ('reasons': "
        "character spans and the annotator — the trained ERA, else the lexicon tagger; empathkit.annotate.highlight)")
    scheduler: Literal["continuous", "micro"] = Field(
        "continuous", description="continuous: requests join and leave the running batch between decoding steps "
        "(serving/continuous.py; generators without step-level decoding fall back to micro); micro: one "
        "Generator.chat call per collected batch (serving/batcher.py)")


class ShuttingDown(Exception):
    """The server stopped before the request was started (HTTP 503)."""


class APIError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.body, self.headers = status, error_body(message, type_, param, code), headers


def _settings_for(req: ChatCompletionRequest, base: GenerationSettings, max_batch: int) -> GenerationSettings:
    upd: dict[str, Any] = {"batch_size": max_batch}
    max_new = req.max_completion_tokens or req.max_tokens
    if max_new:
        upd["max_new_tokens"] = max_new
    if req.temperature is not None:
        if req.temperature == 0:
            upd["do_sample"] = False
        else:
            upd.update(do_sample=True, temperature=req.temperature)
    if req.top_p is not None:
        upd["top_p"] = req.top_p
    if req.seed is not None:
        upd["seed"] = req.seed
    return base.model_copy(update=upd)


def _jsonable(v: Any) -> Any:
    """A ``Reply.info`` value as JSON (exemplars and other dataclasses, tuples, numpy / torch scalars)."""
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if hasattr(v, "to_json"):
        return v.to_json()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return _jsonable(dataclasses.asdict(v))
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):
        try:
            return v.item()
        except (TypeError, ValueError):
            pass
    return str(v)


RESERVED_META = ("emotion", "safety", "batch_size")


def _chunks(text: str) -> list[str]:
    return re.findall(r"\s*\S+", text) or [""]


def _count_reply(generator: Generator, text: str, cache: dict[str, int]) -> int:
    """Tokens of a (fixed) safety reply, cached: ``create_app`` counts the known ones before serving, so the
    generator's tokenizer is not used from the event loop while the model thread uses it."""
    if text not in cache:
        try:
            cache[text] = int(generator.count_tokens(text))
        except Exception:  # noqa: BLE001 - usage is informational; never fail a crisis reply over it
            log.warning("count_tokens failed for a safety reply; reporting words instead", exc_info=True)
            cache[text] = len(text.split())
    return cache[text]


def create_app(generator: Generator, settings: ServerSettings | dict | None = None, *,
               emotion_detector: EmotionDetector | None = None, safety: SafetyLayer | None = None) -> FastAPI:
    """Build the app. ``emotion_detector`` defaults to no classifier (emotion 'none'); pass
    ``EmotionDetector.load()`` to use the trained one. ``safety`` defaults to the rule-based layer."""
    cfg = settings if isinstance(settings, ServerSettings) else ServerSettings(**(settings or {}))
    detector = emotion_detector or EmotionDetector(None)
    guard = safety or SafetyLayer()
    model_id = cfg.model_id or f"empathkit-{generator.name}"
    created = int(time.time())
    batcher_cls = ContinuousBatcher if cfg.scheduler == "continuous" else MicroBatcher
    batcher = batcher_cls(generator, detector, max_batch=cfg.max_batch, max_wait_ms=cfg.max_wait_ms,
                          queue_size=cfg.queue_size)
    reply_tokens: dict[str, int] = {}  # safety reply → its token count (counted once, here, not per request)
    for cat in CATEGORIES:
        _count_reply(generator, guard.reply(SafetyResult(True, cat)), reply_tokens)
    counter = TokenCounter(generator, cfg.tokenize_timeout)
    system_tokens = system_prompt_tokens(generator, counter)
    live: dict[int, ChatJob] = {}  # id → job submitted and not answered: cancelled on shutdown

    closing: list[str] = []  # set by cancel_all: a request still on its way to the queue gets 503, never a wait

    def cancel_all(reason: str = "server is shutting down") -> None:
        """Stop every row at its next decoding step and fail the jobs still queued (their handlers answer 503)."""
        closing.append(reason)
        for job in list(live.values()):
            job.cancelled = True
            if job.future is not None and not job.future.done() and not job.started.is_set():
                job.future.set_exception(ShuttingDown(reason))
                job.future.exception()  # retrieved here; the handler re-raises it
                if job.deltas is not None:
                    job.deltas.put_nowait(None)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        if cfg.highlight_reasons:  # starts loading the reason tagger (ERA, else the lexicon) in a thread
            preload_tagger()
        app.state.loop = asyncio.get_running_loop()
        try:
            yield
        finally:
            cancel_all()
            await batcher.stop()
            counter.close()

    app = FastAPI(title="empathkit", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    app.state.batcher, app.state.settings, app.state.model_id = batcher, cfg, model_id
    app.state.cancel_all, app.state.live_jobs = cancel_all, live

    # -- errors in the OpenAI shape ------------------------------------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError):
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Rejected)
    async def _rejected(_: Request, exc: Rejected):
        return JSONResponse(error_body(exc.message, param=exc.param, code=exc.code), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        msg, param = _validation_message(exc)
        return JSONResponse(error_body(msg, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code)
        msg = {404: "Unknown request URL", 413: f"request body larger than {cfg.max_body_bytes} bytes"}.get(
            exc.status_code, str(exc.detail))
        return JSONResponse(error_body(msg, code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception):
        log.exception("internal error")
        return JSONResponse(error_body("internal server error", "server_error"), status_code=500)

    def require_key(request: Request) -> None:
        if not cfg.api_key:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise APIError(401, "You didn't provide an API key (Authorization: Bearer <key>).",
                           code="missing_api_key", headers={"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode(), cfg.api_key.encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})

    # -- routes --------------------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id, "queue": {"waiting": batcher.queued, "capacity": cfg.queue_size},
                "in_flight": batcher.in_flight, "stats": batcher.stats, "max_batch": cfg.max_batch,
                "stream_mode": cfg.stream_mode, "scheduler": getattr(batcher, "scheduler", "micro"),
                "emotion_classifier": detector.available,
                "emotion_classifier_info": getattr(detector, "description", None),
                "safety": cfg.safety and guard.config.enabled, "auth": bool(cfg.api_key)}

    def _model_card() -> dict:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "empathkit",
                "empathkit": {"method": generator.name, **{k: str(v) for k, v in generator.info.items()}}}

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def models():
        return {"object": "list", "data": [_model_card()]}

    @app.get("/v1/models/{name:path}", dependencies=[Depends(require_key)])
    async def model(name: str):
        if name != model_id:
            raise APIError(404, f"The model '{name}' does not exist", param="model", code="model_not_found")
        return _model_card()

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    async def chat_completions(req: ChatCompletionRequest):
        if req.model != model_id:
            raise APIError(404, f"The model '{req.model}' does not exist (this server serves '{model_id}')",
                           param="model", code="model_not_found")
        msgs = [m.to_chat() for m in req.messages]
        if len(msgs) > cfg.max_messages:
            raise APIError(400, f"too many messages: {len(msgs)} > {cfg.max_messages}", param="messages",
                           code="too_many_messages")
        total = sum(len(m["content"]) for m in msgs)
        if total > cfg.max_input_chars:
            raise APIError(400, f"input too long: {total} characters over all messages > {cfg.max_input_chars}",
                           param="messages", code="context_length_exceeded")
        if msgs[-1]["role"] != "user":
            raise APIError(400, "the last message must have role 'user'", param="messages")
        check_contents(msgs)
        said = msgs[-1]["content"]  # as the user wrote it (the page marks its emotion-reason words)
        max_new = req.max_completion_tokens or req.max_tokens
        if max_new is not None and max_new > cfg.max_tokens_limit:
            raise APIError(400, f"max_tokens must be <= {cfg.max_tokens_limit}",
                           param="max_completion_tokens" if req.max_completion_tokens else "max_tokens")
        settings = _settings_for(req, generator.default_settings, cfg.max_batch)
        budget = prompt_budget(counter.context, settings.max_new_tokens, cfg.max_prompt_tokens,
                               generator.default_settings.max_prompt_tokens)
        if budget is not None and budget < 8:
            raise APIError(400, f"max_tokens {settings.max_new_tokens} leaves no room for a prompt in the model's "
                           f"context of {counter.context} tokens", param="max_tokens", code="context_length_exceeded")
        rid, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        stops = req.stops()
        if not cfg.safety:
            check = SafetyResult(False)
        elif getattr(guard, "semantic", None) is not None:  # a sentence encoder: off the event loop
            check = await asyncio.to_thread(guard.check_messages, msgs)
        else:
            check = guard.check_messages(msgs)
        if check.flagged:  # before the token budget: an over-long crisis message still gets the crisis reply
            reasons = await asyncio.to_thread(message_reasons, said) if cfg.highlight_reasons else None
            return await _safety_reply(req, msgs, check, rid, now, reasons)

        plan = await fit_request(msgs, counter, budget, system_tokens, cfg.overflow)
        # after the budget check (a refused request costs nothing); bounded: MAX_CHARS, ERA's max_length, no load wait
        reasons = await asyncio.to_thread(message_reasons, said) if cfg.highlight_reasons else None
        msgs = plan.messages
        if budget is not None:  # the prompt builder enforces the same budget on the rendered prompt
            settings = settings.model_copy(update={"max_prompt_tokens": budget})

        stream_tokens = req.stream and cfg.stream_mode == "tokens"
        job = ChatJob(msgs, settings, emotion=req.emotion, gate=req.gate, stream=stream_tokens, stops=stops)
        extra = ({"truncation": plan.truncation} if plan.truncation else {}) | ({"reasons": reasons} if reasons else {})
        loop = asyncio.get_running_loop()
        try:
            if closing:  # shutdown began while this request was awaiting (tokenising, highlighting)
                raise ShuttingDown(closing[0])
            batcher.submit(job)
            live[id(job)] = job
            # the generation deadline holds even when nobody waits on the job (a slow stream reader): the row stops
            expire = loop.call_later(cfg.timeout, _expire, job)
            job.future.add_done_callback(lambda _f, j=job, h=expire: (live.pop(id(j), None), h.cancel()))
            if stream_tokens:
                await batcher.wait_started(job, cfg.timeout)
            else:
                result = await batcher.wait(job, cfg.timeout)
        except QueueFull as e:
            raise APIError(429, str(e), "requests", code="rate_limit_exceeded", headers={"Retry-After": "1"}) from None
        except JobTimeout as e:
            raise APIError(504, str(e), "timeout", code="timeout") from None
        except ShuttingDown as e:
            raise APIError(503, str(e), "server_error", code="shutting_down", headers={"Retry-After": "5"}) from None

        if stream_tokens:
            return _sse(_token_stream(req, job, rid, now, extra))
        meta = _result_meta(result, req.gate, extra)
        if req.stream:
            return _sse(_chunk_stream(req, result.text, result.finish_reason, meta, _usage(result), rid, now))
        return _completion(result.text, result.finish_reason, meta, _usage(result), rid, now)

    # -- helpers -------------------------------------------------------------------------------------------------
    def _meta(emotion: str, prob: float | None, source: str, check: SafetyResult, batch_size: int | None,
              gate: float | None, info: dict | None = None) -> dict:
        out = {"emotion": {"label": emotion, "prob": prob, "source": source}, "safety": guard.metadata(check),
               "batch_size": batch_size, "gate": gate}
        for k, v in (info or {}).items():  # the method's Reply.info: gate used, predicted_emotion, exemplars, …
            out[f"method_{k}" if k in RESERVED_META else k] = _jsonable(v)
        return out

    def _result_meta(r: ChatResult, gate: float | None, extra: dict | None = None) -> dict:
        """The metadata of a finished reply; ``extra``: the request's own keys (truncation, reasons)."""
        meta = _meta(r.emotion, r.emotion_prob, r.emotion_source, SafetyResult(False), r.batch_size, gate, r.info)
        return meta | (extra or {})

    def _expire(job: ChatJob) -> None:
        live.pop(id(job), None)  # a job skipped while queued (client gone) never completes: forget it here
        if not job.future.done():
            job.cancelled = True  # should_stop ends the row at its next decoding step

    def _usage(r: ChatResult) -> dict:
        return {"prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                "total_tokens": r.prompt_tokens + r.completion_tokens}

    def _completion(text: str, finish: str, meta: dict, usage: dict, rid: str, now: int) -> JSONResponse:
        return JSONResponse({
            "id": rid, "object": "chat.completion", "created": now, "model": model_id, "system_fingerprint": None,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                         "logprobs": None}],
            "usage": usage, "empathkit": meta})

    def _chunk(rid: str, now: int, delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_id,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    def _tail(req: ChatCompletionRequest, rid: str, now: int, finish: str, usage: dict,
              meta: dict | None = None) -> list[str]:
        out = [_chunk(rid, now, {}, finish, **({"empathkit": meta} if meta is not None else {}))]
        if req.stream_options and req.stream_options.include_usage:
            body = {"id": rid, "object": "chat.completion.chunk", "created": now, "model": model_id,
                    "choices": [], "usage": usage}
            out.append(f"data: {json.dumps(body)}\n\n")
        out.append("data: [DONE]\n\n")
        return out

    async def _chunk_stream(req, text, finish, meta, usage, rid, now) -> AsyncIterator[str]:
        yield _chunk(rid, now, {"role": "assistant", "content": ""}, empathkit=meta)
        for piece in _chunks(text):
            if piece:
                yield _chunk(rid, now, {"content": piece})
                await asyncio.sleep(0)
        for line in _tail(req, rid, now, finish, usage, meta):
            yield line

    def _error_event(message: str, type_: str, code: str | None = None) -> str:
        return f"data: {json.dumps(error_body(message, type_, code=code))}\n\n"

    async def _token_stream(req: ChatCompletionRequest, job: ChatJob, rid: str, now: int,
                            extra: dict | None = None) -> AsyncIterator[str]:
        """SSE of a streamed job: the metadata known before generation, its deltas as its row produces them (the
        batcher already cut them at stop strings), then the finish chunk with the complete metadata."""
        emo, prob, src = job.emotion_info or ("none", None, "none")
        first = _meta(emo, prob, src, SafetyResult(False), job.batch_size, req.gate)
        yield _chunk(rid, now, {"role": "assistant", "content": ""}, empathkit=first | (extra or {}))
        deadline = job.enqueued_at + cfg.timeout
        try:
            while (piece := await batcher.next_delta(job, deadline)) is not None:
                yield _chunk(rid, now, {"content": piece})
            result: ChatResult = job.future.result()
        except JobTimeout:
            yield _error_event("generation timed out", "timeout", code="timeout")
            return
        except ShuttingDown as e:
            yield _error_event(str(e), "server_error", code="shutting_down")
            return
        except Exception as e:  # noqa: BLE001 - report in-stream; headers are already sent
            log.error("streaming generation failed: %s: %s", type(e).__name__, e)
            yield _error_event(f"generation failed: {type(e).__name__}", "server_error")
            return
        finally:
            if not job.future.done():
                job.cancelled = True  # the client went away (or timed out): should_stop ends its row only
        for line in _tail(req, rid, now, result.finish_reason, _usage(result),
                          _result_meta(result, req.gate, extra)):
            yield line

    async def _safety_reply(req, msgs, check: SafetyResult, rid: str, now: int, reasons: dict | None = None):
        log.warning("crisis safety reply (category=%s, rule=%s)", check.category, check.rule)
        if req.emotion is not None:
            emo, prob, src = req.emotion, None, "request"
        else:
            (g,) = await asyncio.to_thread(detector.detect, [conversation_context(msgs)])
            emo, prob, src = g.label, g.prob, "classifier" if g.source.startswith("classifier") else "none"
        text = guard.reply(check)
        n = _count_reply(generator, text, reply_tokens)
        meta = _meta(emo, prob, src, check, None, req.gate) | ({"reasons": reasons} if reasons else {})
        usage = {"prompt_tokens": 0, "completion_tokens": n, "total_tokens": n}
        if req.stream:
            return _sse(_chunk_stream(req, text, "stop", meta, usage, rid, now))
        return _completion(text, "stop", meta, usage, rid, now)

    def _sse(gen: AsyncIterator[str]) -> StreamingResponse:
        return StreamingResponse(gen, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app
