"""The HTTP plumbing under :mod:`empathkit.serving.server`: OpenAI-style messages for validation errors, the
request-body limit, and running the app (uvicorn in the foreground with a SIGTERM that cancels every job, or in a
background thread for tests and benchmarks)."""

from __future__ import annotations

import logging
import socket
import threading
import time

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from empathkit.serving.schemas import error_body

log = logging.getLogger(__name__)

def _loc(loc: tuple) -> str:
    parts = [str(x) for x in loc if x not in ("body",)]
    return ".".join(parts)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errs = exc.errors()
    if not errs:
        return "invalid request", None
    e = errs[0]
    if e.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if not _loc(e.get("loc", ())):
        return "the request body must be a JSON object", None
    param = _loc(e.get("loc", ())) or None
    msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    return (f"{param}: {msg}" if param else msg) + more, param


class BodyLimit:
    """Reject request bodies over ``limit`` bytes with an OpenAI-style 413 (by Content-Length, or while reading a
    chunked body). Hand-written: Starlette's own limiter answers in plain text."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def _too_large(self, scope, receive, send) -> None:
        body = error_body(f"request body larger than {self.limit} bytes", code="request_too_large")
        await JSONResponse(body, status_code=413)(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await self._too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > self.limit:
                return await self._too_large(scope, receive, send)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


# -- running ---------------------------------------------------------------------------------------------------------

def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks): ``with BackgroundServer(app) as url: ...``."""

    def __init__(self, app, host: str = "127.0.0.1", port: int | None = None, log_level: str = "warning"):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.server = uvicorn.Server(uvicorn.Config(app, host=self.host, port=self.port, log_level=log_level,
                                                    lifespan="on", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="empathkit-uvicorn")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def _uvicorn_server(app, host: str, port: int, log_level: str):
    """A uvicorn server whose SIGTERM / SIGINT also cancels every job at once (rows stop at their next decoding step,
    queued requests get 503), so shutting down takes seconds, not the length of the longest generation; in-flight
    replies get ``shutdown_grace`` seconds to finish being sent."""
    import uvicorn

    class _Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            loop, cancel = getattr(app.state, "loop", None), getattr(app.state, "cancel_all", None)
            if loop is not None and cancel is not None and not loop.is_closed():
                loop.call_soon_threadsafe(cancel)

    grace = app.state.settings.shutdown_grace if hasattr(app.state, "settings") else 3.0
    return _Server(uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on",
                                  timeout_graceful_shutdown=grace))


def run(app, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the server is reachable from other machines; set an API key", host)
    _uvicorn_server(app, host, port, log_level).run()
    # the model thread is cancelled; should a step still hang (a huge prefill), do not wait for it at exit
    grace = app.state.settings.shutdown_grace if hasattr(app.state, "settings") else 3.0
    workers = [t for t in threading.enumerate() if t.name.startswith("empathkit-generate") and t.is_alive()]
    for t in workers:
        t.join(timeout=grace)
    if any(t.is_alive() for t in workers):
        import os
        import sys

        log.warning("generation did not stop within %.0f s of shutdown; exiting without waiting for it", grace)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
