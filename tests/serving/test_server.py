"""The OpenAI-compatible API, exercised with the official ``openai`` client against a live loopback server."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from empathkit.serving.server import BackgroundServer, create_app

from serving_helpers import RecordingGenerator, StubEmotionClassifier, tiny_gen  # noqa: F401 (fixture)

MODEL = "tiny"
USER = [{"role": "user", "content": "I finally finished my thesis today."}]


@pytest.fixture(scope="module")
def server(tiny_gen):
    from empathkit.serving.emotion import EmotionDetector

    app = create_app(tiny_gen, {"model_id": MODEL, "max_input_chars": 2000, "max_tokens_limit": 64,
                                "max_body_bytes": 50_000}, emotion_detector=EmotionDetector(StubEmotionClassifier()))
    with BackgroundServer(app) as url:
        yield url


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=60) as c:
        yield c


def test_models_and_health(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and health["emotion_classifier"] is True and health["auth"] is False


def test_plain_completion_with_emotion_metadata(client):
    r = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=6)
    assert r.object == "chat.completion" and r.model == MODEL
    msg = r.choices[0].message
    assert msg.role == "assistant" and msg.content.strip()
    assert r.choices[0].finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 10
    meta = r.model_extra["empathkit"]
    assert meta["emotion"] == {"label": "sad", "prob": pytest.approx(0.87), "source": "classifier"}
    assert meta["safety"] == {"flagged": False}


def test_streaming_completion(client):
    stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True, max_tokens=6,
                                            stream_options={"include_usage": True},
                                            extra_body={"emotion": "joyful"})
    chunks = list(stream)
    first = chunks[0]
    assert first.object == "chat.completion.chunk" and first.choices[0].delta.role == "assistant"
    assert first.model_extra["empathkit"]["emotion"]["label"] == "joyful"  # forced via the extra field
    assert first.model_extra["empathkit"]["emotion"]["source"] == "request"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streaming_with_a_stop_string_that_never_occurs(client):
    stream = client.chat.completions.create(model=MODEL, messages=USER, stream=True, max_tokens=8, stop=["\u0000"])
    chunks = list(stream)
    assert chunks[0].model_extra["empathkit"]["batch_size"] >= 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_crisis_message_gets_safety_reply_plain_and_streamed(client):
    msgs = [{"role": "user", "content": "I have decided to end my life tonight."}]
    r = client.chat.completions.create(model=MODEL, messages=msgs)
    assert "local emergency services" in r.choices[0].message.content
    safety = r.model_extra["empathkit"]["safety"]
    assert safety["flagged"] is True and safety["category"] == "suicide" and safety["source"] == "rules"
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs, stream=True))
    assert chunks[0].model_extra["empathkit"]["safety"]["flagged"] is True
    assert "crisis line" in "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.parametrize("kwargs,param", [
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": []}, "messages"),
    ({"messages": USER, "temperature": 3.5}, "temperature"),
    ({"messages": USER, "top_p": 0}, "top_p"),
    ({"messages": USER, "max_tokens": 0}, "max_tokens"),
    ({"messages": USER, "max_tokens": 10_000}, "max_tokens"),
    ({"messages": USER, "n": 2}, "n"),
    ({"messages": USER + [{"role": "assistant", "content": "ok"}]}, "messages"),
    ({"messages": USER, "extra_body": {"emotion": "hangry"}}, "emotion"),
    ({"messages": USER, "extra_body": {"gate": 1.5}}, "gate"),
    ({"messages": USER, "extra_body": {"bogus_field": 1}}, "bogus_field"),
])
def test_bad_requests_get_openai_style_400(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=MODEL, **kwargs)
    err = ei.value.body
    assert ei.value.status_code == 400 and err["type"] == "invalid_request_error" and err["param"] == param
    assert err["message"]


def test_unknown_model_and_malformed_json(client, server):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="gpt-4o", messages=USER)
    assert ei.value.body["code"] == "model_not_found"
    r = httpx.post(server + "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"]
    r = httpx.get(server + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_oversized_input_rejected(client, server):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 1000}])
    assert ei.value.body["code"] == "context_length_exceeded"
    r = httpx.post(server + "/v1/chat/completions", json={"model": MODEL, "messages": USER, "user": "x" * 60_000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_api_key_enforced(tiny_gen):
    app = create_app(tiny_gen, {"model_id": MODEL, "api_key": "s3cret"})
    with BackgroundServer(app) as url:
        with openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as ei:
                bad.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
            assert ei.value.body["code"] == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                bad.models.list()
        assert httpx.get(url + "/v1/models").status_code == 401  # no header at all
        assert httpx.get(url + "/health").status_code == 200  # health stays open
        with openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0) as good:
            assert good.chat.completions.create(model=MODEL, messages=USER, max_tokens=2).choices[0].message


def _wait_for(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_queue_full_answers_429_and_timeout_504(tiny_gen):
    gen = RecordingGenerator(tiny_gen, hold=True)
    app = create_app(gen, {"model_id": MODEL, "max_batch": 1, "queue_size": 1, "max_wait_ms": 0, "timeout": 30})
    with BackgroundServer(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        results = []
        call = lambda: results.append(c.chat.completions.create(model=MODEL, messages=USER, max_tokens=2))  # noqa
        first = threading.Thread(target=call)
        first.start()
        assert gen.entered.wait(30)  # request 1 is generating (held)
        second = threading.Thread(target=call)
        second.start()
        _wait_for(lambda: httpx.get(url + "/health").json()["queue"]["waiting"] == 1)  # request 2 waits
        with pytest.raises(openai.RateLimitError) as ei:
            c.chat.completions.create(model=MODEL, messages=USER, max_tokens=2)
        assert ei.value.status_code == 429 and ei.value.body["code"] == "rate_limit_exceeded"
        gen.release.set()
        first.join(60)
        second.join(60)
        assert len(results) == 2 and all(r.choices[0].message.content is not None for r in results)
        assert httpx.get(url + "/health").json()["stats"]["rejected"] == 1

    slow = RecordingGenerator(tiny_gen, hold=True)
    app = create_app(slow, {"model_id": MODEL, "timeout": 0.3})
    with BackgroundServer(app) as url:
        r = httpx.post(url + "/v1/chat/completions", json={"model": MODEL, "messages": USER}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        slow.release.set()


def test_concurrent_requests_are_micro_batched(tiny_gen):
    gen = RecordingGenerator(tiny_gen)
    app = create_app(gen, {"model_id": MODEL, "max_batch": 8, "max_wait_ms": 300})
    n = 6
    with BackgroundServer(app) as url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as c:
        out: list = [None] * n

        def call(i):
            out[i] = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"msg {i}"}],
                                               max_tokens=4, extra_body={"gate": 0.25, "emotion": "afraid"})

        threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert all(o is not None and o.choices[0].message.content is not None for o in out)
    assert sum(c["n"] for c in gen.calls) == n and max(c["n"] for c in gen.calls) > 1
    assert max(o.model_extra["empathkit"]["batch_size"] for o in out) > 1
    assert all(g == 0.25 for c in gen.calls for g in c["gates"])
    assert all(e == "afraid" for c in gen.calls for e in c["emotions"])


def test_token_stream_stops_generating_when_the_client_leaves(tiny_gen):
    steps = []
    hook = tiny_gen.model.register_forward_hook(lambda *a: steps.append(1))
    try:
        app = create_app(tiny_gen, {"model_id": MODEL, "max_tokens_limit": 400})
        with BackgroundServer(app) as url:
            body = {"model": MODEL, "messages": USER, "max_tokens": 400, "stream": True}
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
                for line in r.iter_lines():
                    if '"content": "' in line and '"content": ""' not in line:
                        break  # first real token: hang up
            _wait_for(lambda: httpx.get(url + "/health").json()["in_flight"] == 0)
    finally:
        hook.remove()
    assert 0 < len(steps) < 400  # the stopping criterion ended generation long before max_tokens
