"""A bounded abuse test of the server: oversized token counts, bad types, invisible content, concurrent clients that
hang up, generation deadlines and SIGTERM. Every answer is a 4xx JSON error or a normal reply, never a 5xx, and the
server is healthy (queue drained, memory bounded) afterwards."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from empathkit.serving.server import BackgroundServer, create_app

from serving_helpers import EchoGenerator, tiny_gen  # noqa: F401 (fixture)

MODEL = "tiny"
OK = [{"role": "user", "content": "I finally finished my thesis today."}]
EMOJI = "\U0001F600" * 15_999  # 15,999 characters (under the 16,000 limit), ~4 tokens each


@pytest.fixture(scope="module")
def server(tiny_gen):
    app = create_app(tiny_gen, {"model_id": MODEL, "max_tokens_limit": 64})
    with BackgroundServer(app) as url:
        yield url, app


def post(url, body, timeout=60.0, **kw):
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=timeout, **kw)


def body(messages=OK, **kw):
    return {"model": MODEL, "messages": messages, "max_tokens": 4, **kw}


def error(r) -> dict:
    return r.json()["error"]


@pytest.mark.parametrize("text", [EMOJI, "word " * 3_000, "\u00e9\u4e2d" * 7_000], ids=["emoji", "words", "cjk"])
def test_a_message_over_the_token_budget_is_a_400_before_the_model(server, text):
    url, app = server
    rows = app.state.batcher.stats["rows"]
    t0 = time.monotonic()
    r = post(url, body([{"role": "user", "content": text}]))
    took = time.monotonic() - t0
    assert r.status_code == 400 and error(r)["code"] == "context_length_exceeded", r.text
    assert "tokens" in error(r)["message"]
    assert took < 5, took  # tokenised and refused, never queued for the model (the bound is 1 s on an idle machine)
    assert app.state.batcher.stats["rows"] == rows
    ok = post(url, body())
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] is not None


def test_history_over_the_budget_is_dropped_oldest_first_and_reported(server):
    url, _ = server
    long_turn = "I keep thinking about what happened at work and it will not leave me alone. " * 12
    msgs = []
    for i in range(6):
        msgs += [{"role": "user", "content": f"{i}: {long_turn}"}, {"role": "assistant", "content": "I hear you."}]
    msgs.append({"role": "user", "content": "What should I do now?"})
    r = post(url, body(msgs))
    assert r.status_code == 200, r.text
    trunc = r.json()["empathkit"]["truncation"]
    assert trunc["dropped_messages"] >= 2 and trunc["clipped_tokens"] == 0
    assert trunc["prompt_tokens_estimate"] <= trunc["budget"]
    assert r.json()["usage"]["prompt_tokens"] <= trunc["budget"]
    assert "truncation" not in post(url, body()).json()["empathkit"]  # nothing dropped: nothing reported


def test_truncate_mode_clips_the_last_message_and_reports_it(tiny_gen):
    app = create_app(tiny_gen, {"model_id": MODEL, "overflow": "truncate", "max_prompt_tokens": 96})
    with BackgroundServer(app) as url:
        r = post(url, body([{"role": "user", "content": EMOJI[:2000]}]))
    assert r.status_code == 200, r.text
    trunc = r.json()["empathkit"]["truncation"]
    assert trunc["budget"] == 96 and trunc["clipped_tokens"] > 1000
    assert r.json()["usage"]["prompt_tokens"] <= 96


@pytest.mark.parametrize("field, value", [
    ("max_tokens", "5"), ("max_tokens", True), ("max_tokens", 5.0), ("temperature", "0.5"), ("temperature", True),
    ("top_p", "1"), ("stream", "yes"), ("stream", 1), ("n", "1"), ("seed", True), ("seed", "7"), ("gate", "0.5"),
    ("messages", "hello"), ("messages", [{"role": "user", "content": 5}]), ("messages", [{"role": "user"}]),
    ("messages", [{"role": "robot", "content": "hi"}]), ("stop", 5), ("stream_options", {"include_usage": "yes"}),
    ("max_tokens", 10**30), ("max_tokens", -1), ("max_tokens", 0),
])
def test_values_are_never_coerced(server, field, value):
    r = post(server[0], body() | {field: value})
    assert r.status_code == 400, (field, value, r.status_code, r.text)
    assert error(r)["param"] and error(r)["param"].split(".")[0] == field


@pytest.mark.parametrize("content, code", [
    ("\x00", "invalid_content"), ("\x00" * 50, "invalid_content"), ("hi\x00there", "invalid_content"),
    ("\x1b[2J", "invalid_content"), ("\x7f", "invalid_content"), ("", "empty_content"), ("   \n\t", "empty_content"),
    ("\u200b\u200d", "empty_content"), ("\ufeff", "empty_content"),
])
def test_empty_or_control_character_content_is_rejected(server, content, code):
    r = post(server[0], body([{"role": "user", "content": content}]))
    assert r.status_code == 400 and error(r)["code"] == code, r.text
    assert error(r)["param"] == "messages[0].content"


def test_an_empty_system_message_is_rejected_and_an_empty_assistant_turn_is_not(server):
    url, _ = server
    r = post(url, body([{"role": "system", "content": " "}] + OK))
    assert r.status_code == 400 and error(r)["param"] == "messages[0].content"
    r = post(url, body(OK + [{"role": "assistant", "content": ""}] + OK))
    assert r.status_code == 200, r.text


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_concurrent_clients_mixing_abuse_and_disconnects(server, one_torch_thread):
    url, app = server
    bad = [body([{"role": "user", "content": EMOJI}]), body(max_tokens="5"), body([{"role": "user", "content": "\x00"}]),
           {"model": MODEL}, body(max_tokens=10_000)]
    statuses: list[int] = []
    lock = threading.Lock()
    rss0 = _rss_mb()

    def client(k: int) -> None:
        for j in range(2):
            i = k * 2 + j
            try:
                if i % 4 == 0:  # a streaming client that hangs up after the first event
                    with httpx.stream("POST", url + "/v1/chat/completions", json=body(stream=True, max_tokens=8),
                                      timeout=60) as r:
                        code = r.status_code
                        next(r.iter_lines())
                elif i % 4 == 1:  # a client that gives up before the reply
                    try:
                        code = post(url, body(max_tokens=8), timeout=0.05).status_code
                    except httpx.TimeoutException:
                        code = 0
                elif i % 4 == 2:
                    code = post(url, bad[i % len(bad)]).status_code
                else:
                    code = post(url, body()).status_code
            except httpx.HTTPError as e:  # pragma: no cover - reported through the assertion below
                code = -1
                print("client error", type(e).__name__, e)
            with lock:
                statuses.append(code)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(statuses) == 32 and -1 not in statuses
    assert not [s for s in statuses if s >= 500], statuses
    assert {s for s in statuses if s} <= {200, 400}, statuses
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        h = httpx.get(url + "/health").json()
        if h["in_flight"] == 0 and h["queue"]["waiting"] == 0 and not app.state.live_jobs:
            break
        time.sleep(0.1)
    assert h["status"] == "ok" and h["in_flight"] == 0 and h["queue"]["waiting"] == 0 and not app.state.live_jobs
    assert post(url, body()).status_code == 200
    assert _rss_mb() - rss0 < 400  # peak RSS of this process (tiny model): no unbounded growth


def test_the_generation_deadline_stops_the_row():
    gen = EchoGenerator(step_delay=0.05)
    app = create_app(gen, {"model_id": MODEL, "timeout": 0.5, "max_tokens_limit": 4000})
    words = " ".join(["word"] * 300)
    with BackgroundServer(app) as url:
        t0 = time.monotonic()
        r = post(url, {"model": MODEL, "messages": [{"role": "user", "content": words}], "max_tokens": 4000})
        assert r.status_code == 504 and error(r)["code"] == "timeout"
        while app.state.batcher.in_flight and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        assert app.state.batcher.in_flight == 0 and time.monotonic() - t0 < 3  # stopped, not 4000 × 50 ms
        assert app.state.batcher.stats["cancelled"] == 1
        assert post(url, {"model": MODEL, "messages": OK, "max_tokens": 3}).status_code == 200


SERVE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {helpers!r})
    from serving_helpers import EchoGenerator
    from empathkit.serving.server import create_app, run
    app = create_app(EchoGenerator(step_delay=0.2), {{"model_id": "tiny", "max_tokens_limit": 4000, "timeout": 600}})
    run(app, port={port}, log_level="warning")
""")


def test_sigterm_stops_the_server_within_seconds_during_a_long_generation(tmp_path):
    from empathkit.serving.server import free_port

    port = free_port()
    script = tmp_path / "serve.py"
    script.write_text(SERVE.format(helpers=str(Path(__file__).parent), port=port))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=os.environ | {"PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        words = " ".join(["word"] * 300)
        out: dict = {}

        def long_request():
            try:
                r = post(url, {"model": "tiny", "messages": [{"role": "user", "content": words}],
                               "max_tokens": 4000}, timeout=60)
                out["status"], out["body"] = r.status_code, r.json()
            except httpx.HTTPError as e:
                out["status"] = type(e).__name__

        t = threading.Thread(target=long_request)
        t.start()
        time.sleep(1.5)  # generating: 300 words at 0.2 s a step would take a minute
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        took = time.monotonic() - t0
        t.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert took < 8, took
    assert out.get("status") == 200 and out["body"]["choices"][0]["finish_reason"] == "cancelled", out
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down
    assert "Traceback" not in proc.stdout.read().decode()


def test_error_bodies_are_json_in_the_openai_shape(server):
    r = post(server[0], body([{"role": "user", "content": EMOJI}]))
    assert set(json.loads(r.text)) == {"error"} and set(error(r)) == {"message", "type", "param", "code"}
