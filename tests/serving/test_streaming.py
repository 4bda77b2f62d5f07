"""Streaming through the batcher: streamed and non-streamed requests share one ``Generator.chat`` call, each streamed
client gets exactly its own row's text, a client hanging up cancels only its row, stop strings while streaming, a
generator with no model of its own, ``chunks`` mode and stream timeouts. Live loopback servers, the tiny random
Llama (one torch thread)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from serving_helpers import EchoGenerator, RecordingGenerator, tiny_gen  # noqa: F401 (fixture)

from empathkit.models.trim import trim_to_sentence
from empathkit.serving.batcher import StopText, apply_stops
from empathkit.serving.server import BackgroundServer, create_app

MODEL = "tiny"


def body(text: str, stream: bool, **kw) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], "stream": stream, **kw}


def sse(url: str, payload: dict, hang_up_after_text: bool = False) -> list[dict]:
    """The SSE events of one streamed request (``[DONE]`` excluded); optionally hang up after the first text."""
    events = []
    with httpx.stream("POST", url + "/v1/chat/completions", json=payload, timeout=60) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            events.append(json.loads(line[6:]))
            if hang_up_after_text and streamed_text(events):
                break
    return events


def streamed_text(events: list[dict]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))


def finish_of(events: list[dict]) -> str | None:
    return next((e["choices"][0]["finish_reason"] for e in events if e.get("choices") and
                 e["choices"][0]["finish_reason"]), None)


def plain(url: str, payload: dict) -> dict:
    r = httpx.post(url + "/v1/chat/completions", json=payload, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def run_all(fns) -> None:
    threads = [threading.Thread(target=f) for f in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)


def reply_for(call: dict, user: str):
    """The reply of the row of a recorded chat call whose last user message is ``user``."""
    return [r for u, r in zip(call["users"], call["replies"]) if u == user]


# -- the batcher's stop-string scanner --------------------------------------------------------------------------------

def test_stop_text_holds_back_possible_stop_strings_and_trailing_space():
    st = StopText(["STOP", "\n\n"])
    assert st.feed("Hello") == "Hello"
    assert st.feed(" wor") == " wor"
    assert st.feed("ld ST") == "ld "  # "ST" may become "STOP": held back
    assert st.feed("ILL ") == "STILL"  # it did not; the trailing space waits (the final reply is stripped)
    assert st.feed("\n") == ""  # may become "\n\n"
    assert st.feed("\nmore") == " " and st.hit  # it did: the text before it, then nothing more
    assert st.feed("ignored") == "" and st.text == "Hello world STILL "
    assert st.finish(apply_stops("Hello world STILL \n\nmore ignored", ["STOP", "\n\n"])[0]) == ""
    no_stops = StopText()
    assert no_stops.feed("a ") == "a" and no_stops.finish("a b") == " b"  # a generator that skipped deltas
    assert apply_stops("abcabc", ["c", "b"]) == ("a", True) and apply_stops("abc", []) == ("abc", False)


# -- one batch for streamed and non-streamed requests --------------------------------------------------------------

def in_order(url: str, payloads: list[dict]) -> list:
    """Send ``payloads`` concurrently but submitted in this order (each after the server counted the previous one),
    so a batch has the same rows in the same order every time: with the same seed, sampling then repeats exactly."""
    out: list = [None] * len(payloads)
    threads = []
    for i, p in enumerate(payloads):
        before = httpx.get(url + "/health").json()["stats"]["requests"]
        fn = (lambda i=i, p=p: out.__setitem__(i, sse(url, p))) if p["stream"] else \
            (lambda i=i, p=p: out.__setitem__(i, plain(url, p)))
        threads.append(threading.Thread(target=fn))
        threads[-1].start()
        deadline = time.monotonic() + 30
        while httpx.get(url + "/health").json()["stats"]["requests"] == before:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for t in threads:
        t.join(120)
    return out


def text_of(result) -> str:
    return streamed_text(result) if isinstance(result, list) else result["choices"][0]["message"]["content"]


def served(reply) -> str:
    """What the server sends for a generator reply: a reply cut by the token budget is trimmed to its last complete
    sentence (the tiny model writes none, so the cut is marked with …)."""
    return trim_to_sentence(reply.text).text if reply.finish_reason == "length" else reply.text


def test_streamed_and_plain_requests_share_one_batch_and_each_stream_gets_its_own_text(tiny_gen, one_torch_thread):
    gen = RecordingGenerator(tiny_gen)
    prompts = ["My dog ran away this morning.", "I passed my driving test!", "Work has been so stressful lately.",
               "My sister is visiting next week."]
    app = create_app(gen, {"model_id": MODEL, "max_batch": len(prompts), "max_wait_ms": 5000})
    with BackgroundServer(app) as url:
        # the same four rows twice (seeded sampling): streamed / plain alternate, then the other way round
        first = in_order(url, [body(p, stream=i % 2 == 0) for i, p in enumerate(prompts)])
        second = in_order(url, [body(p, stream=i % 2 == 1) for i, p in enumerate(prompts)])
        stats = httpx.get(url + "/health").json()["stats"]
    assert [c["n"] for c in gen.calls] == [4, 4] and all(c["streamed"] for c in gen.calls)  # ONE call per round
    assert stats["batches"] == 2 and stats["mean_batch"] == 4 and stats["largest_batch"] == 4
    assert stats["streamed"] == 4 and stats["streamed_batched"] == 4
    for rnd, call in zip((first, second), gen.calls):
        assert call["users"] == prompts
        for res, reply in zip(rnd, call["replies"]):
            assert text_of(res) == served(reply)  # each client got exactly its own row's reply
            if isinstance(res, list):
                assert res[0]["empathkit"]["batch_size"] == 4 and finish_of(res) == reply.finish_reason
                assert len([e for e in res if e["choices"] and e["choices"][0]["delta"].get("content")]) >= 2
            else:
                assert res["empathkit"]["batch_size"] == 4
                assert res["usage"]["completion_tokens"] == reply.completion_tokens
    for a, b in zip(first, second):  # streamed deltas == the non-streamed text for the same seed and settings
        assert text_of(a) == text_of(b) and text_of(a).strip()
    assert len({text_of(r) for r in first}) == 4  # distinct replies: no cross-talk between rows


def test_a_client_hanging_up_cancels_only_its_row(tiny_gen, one_torch_thread):
    gen = RecordingGenerator(tiny_gen, step_delay=0.01)  # ≥ 20 ms per decoding step for the two rows
    app = create_app(gen, {"model_id": MODEL, "max_batch": 2, "max_wait_ms": 5000, "max_tokens_limit": 400})
    leaver, stayer = "I am leaving early.", "I am staying until the end."
    out: dict = {}
    with BackgroundServer(app) as url:
        run_all([lambda: out.__setitem__("leaver", sse(url, body(leaver, True, max_tokens=60), True)),
                 lambda: out.__setitem__("stayer", sse(url, body(stayer, True, max_tokens=60)))])
        deadline = time.monotonic() + 30
        while gen.calls[0]["replies"] is None or httpx.get(url + "/health").json()["in_flight"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        stats = httpx.get(url + "/health").json()["stats"]
    (call,) = gen.calls
    assert call["n"] == 2 and call["streamed"]
    (gone,), (kept,) = reply_for(call, leaver), reply_for(call, stayer)
    assert gone.finish_reason == "cancelled" and gone.completion_tokens < 60
    assert kept.finish_reason in ("length", "stop") and kept.finish_reason != "cancelled"
    assert streamed_text(out["stayer"]) == served(kept) and finish_of(out["stayer"]) == kept.finish_reason
    assert stats["cancelled"] == 1 and stats["streamed_batched"] == 2


def test_stop_strings_in_a_streamed_request(tiny_gen, one_torch_thread):
    gen = RecordingGenerator(tiny_gen)
    app = create_app(gen, {"model_id": MODEL, "max_batch": 2, "max_wait_ms": 5000})
    prompt = "Tell me something about the weather."
    with BackgroundServer(app) as url:
        plain1, stream1 = in_order(url, [body(prompt, False, max_tokens=24), body(prompt, True, max_tokens=24)])
        text = streamed_text(stream1)
        assert len(text) >= 12
        stop = text[len(text) // 2:len(text) // 2 + 4]  # a few characters from the middle (often spans tokens)
        expected = text[:text.find(stop)]
        plain2, stream2 = in_order(url, [body(prompt, False, max_tokens=24),
                                         body(prompt, True, max_tokens=24, stop=[stop, "\u0000"])])
    assert streamed_text(stream2) == expected and finish_of(stream2) == "stop"
    assert all(stop not in (e["choices"][0]["delta"].get("content") or "") for e in stream2 if e.get("choices"))
    assert text_of(plain2) == text_of(plain1)  # the other row of the batch is unaffected
    (p1, s1), (p2, s2) = gen.calls[0]["replies"], gen.calls[1]["replies"]
    assert s2.finish_reason == "cancelled" and s2.completion_tokens < s1.completion_tokens  # stopped generating there
    assert p2.finish_reason == p1.finish_reason != "cancelled"
    assert stream2[-1]["empathkit"]["batch_size"] == 2


# -- any Generator: one with no model or tokenizer -------------------------------------------------------------------

def test_a_generator_without_model_or_tokenizer_is_served_and_streamed():
    gen = EchoGenerator(step_delay=0.002)
    app = create_app(gen, {"model_id": MODEL, "max_batch": 4, "max_wait_ms": 5000})
    out: dict = {}
    with BackgroundServer(app) as url:
        msg = "alpha beta STOP gamma delta"
        run_all([lambda: out.__setitem__("plain", plain(url, body(msg, False))),
                 lambda: out.__setitem__("cut", plain(url, body(msg, False, stop=["beta ST"]))),
                 lambda: out.__setitem__("stream", sse(url, body(msg, True))),
                 lambda: out.__setitem__("stream_cut", sse(url, body(msg, True, stop=["beta ST"])))])
        crisis = plain(url, body("I want to kill myself", False))
        health = httpx.get(url + "/health").json()
    assert gen.calls == [4]
    full = out["plain"]
    assert full["choices"][0]["message"]["content"] == "you said: alpha beta STOP gamma delta"
    assert full["usage"] == {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}  # from the Reply
    meta = full["empathkit"]
    assert meta["gate"] == 0.42 and meta["predicted_emotion"] == "sad"  # Reply.info in the metadata
    assert meta["exemplars"][0]["id"] == "ed-1" and meta["batch_size"] == 4
    assert streamed_text(out["stream"]) == "you said: alpha beta STOP gamma delta"
    assert out["stream"][-1]["empathkit"]["predicted_emotion"] == "sad"  # complete metadata with finish_reason
    assert out["cut"]["choices"][0]["message"]["content"] == "you said: alpha "
    assert out["cut"]["choices"][0]["finish_reason"] == "stop" and out["cut"]["usage"]["completion_tokens"] == 5
    assert streamed_text(out["stream_cut"]) == "you said: alpha " and finish_of(out["stream_cut"]) == "stop"
    assert crisis["empathkit"]["safety"]["flagged"] and crisis["usage"]["completion_tokens"] == \
        len(crisis["choices"][0]["message"]["content"].split())  # Generator.count_tokens
    assert health["stats"]["streamed_batched"] == 2


def test_chunks_mode_streams_the_finished_reply(tiny_gen, one_torch_thread):
    gen = RecordingGenerator(tiny_gen)
    app = create_app(gen, {"model_id": MODEL, "stream_mode": "chunks"})
    with BackgroundServer(app) as url:
        events = sse(url, body("I got a new bike.", True))
        reply = plain(url, body("I got a new bike.", False))
    assert streamed_text(events) == reply["choices"][0]["message"]["content"] != ""  # seeded: the same reply
    assert [c["streamed"] for c in gen.calls] == [False, False]
    assert events[0]["empathkit"]["batch_size"] == 1


def test_a_stream_that_times_out_gets_an_error_event(tiny_gen):
    gen = RecordingGenerator(tiny_gen, hold=True)
    app = create_app(gen, {"model_id": MODEL, "timeout": 0.5})
    try:
        with BackgroundServer(app) as url:
            events = sse(url, body("Hello there.", True))
            assert events[-1]["error"]["code"] == "timeout"
            assert httpx.get(url + "/health").json()["stats"]["timeouts"] == 1
            gen.release.set()  # the held row then sees should_stop and ends at once
    finally:
        gen.release.set()


@pytest.mark.parametrize("mode", ["bogus"])
def test_unknown_stream_mode_rejected(tiny_gen, mode):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        create_app(tiny_gen, {"stream_mode": mode})
