"""The asyncio micro-batcher on its own: grouping by settings, streamed and plain jobs in one call, emotion detection
over the whole context, queue bound, timeouts of queued jobs."""

from __future__ import annotations

import asyncio

import pytest
from serving_helpers import (EchoGenerator, RecordingGenerator, StubEmotionClassifier, stub_detector,  # noqa: F401
                             tiny_gen)

from empathkit.serving.batcher import ChatJob, JobTimeout, MicroBatcher, QueueFull
from empathkit.serving.emotion import EmotionDetector

USER = [{"role": "user", "content": "I am so happy, I passed!"}]


def test_batches_group_by_settings_and_detect_emotions(tiny_gen, stub_detector):
    gen = RecordingGenerator(tiny_gen)
    s4 = tiny_gen.default_settings.model_copy(update={"max_new_tokens": 4})
    s5 = tiny_gen.default_settings.model_copy(update={"max_new_tokens": 5})

    async def main():
        b = MicroBatcher(gen, stub_detector, max_batch=8, max_wait_ms=200, queue_size=8)
        await b.start()
        jobs = [b.submit(ChatJob(USER, s4)), b.submit(ChatJob(USER, s5)), b.submit(ChatJob(USER, s4, emotion="afraid"))]
        results = await asyncio.gather(*(b.wait(j, 60) for j in jobs))
        await b.stop()
        return results

    results = asyncio.run(main())
    assert sorted(c["n"] for c in gen.calls) == [1, 2]  # one batch per distinct settings
    assert [r.batch_size for r in results] == [2, 1, 2]
    assert [(r.emotion, r.emotion_source) for r in results] == [("joyful", "classifier"), ("joyful", "classifier"),
                                                                ("afraid", "request")]
    assert all(r.completion_tokens <= s for r, s in zip(results, (4, 5, 4)))
    two = next(c for c in gen.calls if c["n"] == 2)
    assert two["emotions"] == ["joyful", "afraid"] and two["gates"] is None


def test_streamed_and_plain_jobs_share_one_call_and_the_whole_context_is_classified():
    gen = EchoGenerator()
    clf = StubEmotionClassifier()
    convo = [{"role": "user", "content": "I am so happy"}, {"role": "assistant", "content": "Why?"},
             {"role": "user", "content": "no reason"}]

    async def main():
        b = MicroBatcher(gen, EmotionDetector(clf), max_batch=8, max_wait_ms=200, queue_size=8)
        await b.start()
        s = gen.default_settings
        streamed = b.submit(ChatJob(convo, s, stream=True, stops=["reason"]))
        plain = b.submit(ChatJob([{"role": "user", "content": "hello you"}], s, gate=0.3))
        results = await asyncio.gather(b.wait(streamed, 60), b.wait(plain, 60))
        deltas = []
        while (d := await b.next_delta(streamed, None)) is not None:
            deltas.append(d)
        await b.stop()
        return results, deltas, b.stats

    (r_stream, r_plain), deltas, stats = asyncio.run(main())
    assert gen.calls == [2]  # one Generator.chat call for both
    assert clf.calls == [["I am so happy Why? no reason", "hello you"]]  # whole contexts, one detection call
    assert (r_stream.emotion, r_stream.emotion_prob, r_stream.emotion_source) == ("joyful", 0.91, "classifier")
    assert r_stream.text == "you said: no " == "".join(deltas) and r_stream.finish_reason == "stop"
    assert r_plain.text == "you said: hello you" and r_plain.info["gate"] == 0.42 and r_plain.batch_size == 2
    assert stats["batches"] == 1 and stats["rows"] == 2 and stats["streamed_batched"] == 1


def test_controls_from_the_detected_or_forced_emotion():
    s = None
    assert MicroBatcher.controls(ChatJob([], s, emotion_info=("sad", 0.8, "classifier"))).emotion_source == "classifier"
    forced = MicroBatcher.controls(ChatJob([], s, gate=0.2, emotion_info=("proud", None, "request")))
    assert (forced.emotion, forced.emotion_source, forced.gate) == ("proud", "request", 0.2)
    none = MicroBatcher.controls(ChatJob([], s, emotion_info=("none", None, "none")))
    assert none.emotion is None and none.emotion_source is None  # nothing to condition on: the method decides


def test_queue_bound_and_timed_out_jobs_are_skipped(tiny_gen):
    gen = RecordingGenerator(tiny_gen, hold=True)
    s = tiny_gen.default_settings

    async def main():
        b = MicroBatcher(gen, EmotionDetector(None), max_batch=1, max_wait_ms=0, queue_size=1)
        await b.start()
        first = b.submit(ChatJob(USER, s))
        while not gen.entered.is_set():
            await asyncio.sleep(0.01)
        queued = b.submit(ChatJob(USER, s, gate=0.5))
        with pytest.raises(QueueFull):
            b.submit(ChatJob(USER, s))
        with pytest.raises(JobTimeout):
            await b.wait(queued, 0.05)  # times out while still queued → the worker must skip it
        gen.release.set()
        r = await b.wait(first, 60)
        await asyncio.sleep(0.2)
        await b.stop()
        return r, b.stats

    r, stats = asyncio.run(main())
    assert r.emotion == "none" and r.emotion_source == "none"
    assert len(gen.calls) == 1  # the timed-out job never reached the model
    assert stats["rejected"] == 1 and stats["timeouts"] == 1


def test_invalid_batcher_settings():
    with pytest.raises(ValueError):
        MicroBatcher(None, max_batch=0)


CUT = [{"role": "user", "content": "I failed my exam. I studied for weeks and weeks"}]  # echoed one word per token


def run_jobs(batcher_kwargs: dict, jobs: list[ChatJob], gen=None, detector=None, hold_tokens: int | None = None):
    """Run ``jobs`` through a MicroBatcher over the EchoGenerator; returns (results, streamed text per job)."""
    gen = gen or EchoGenerator()

    async def main():
        b = MicroBatcher(gen, detector, max_batch=8, max_wait_ms=50, **batcher_kwargs)
        if hold_tokens is not None:
            b.hold_tokens = hold_tokens
        await b.start()
        for j in jobs:
            b.submit(j)
        results = await asyncio.gather(*(b.wait(j, 60) for j in jobs))
        texts = []
        for j in jobs:
            parts = []
            while j.deltas is not None and (d := j.deltas.get_nowait()) is not None:
                parts.append(d)
            texts.append("".join(parts))
        await b.stop()
        return results, texts

    return asyncio.run(main())


def test_a_reply_cut_by_the_budget_is_trimmed_to_its_last_sentence_and_the_untrimmed_text_kept(stub_detector):
    s8 = EchoGenerator().default_settings.model_copy(update={"max_new_tokens": 8})
    short = [{"role": "user", "content": "Thank you."}]
    (r, whole), _ = run_jobs({}, [ChatJob(CUT, s8), ChatJob(short, s8)], detector=stub_detector)
    assert r.text == "you said: I failed my exam." and r.finish_reason == "length"
    assert r.info["trim"] == {"text": r.text, "untrimmed_text": "you said: I failed my exam. I studied",
                              "removed": " I studied", "finish_reason": "length", "marked": False,
                              "stream_corrected": False}
    assert whole.finish_reason == "stop" and whole.text == "you said: Thank you."
    assert "trim" not in whole.info
    # which classifier produced the emotion travels with the reply (the server returns it in its metadata)
    assert r.info["emotion_classifier"]["name"] == "emotion" and r.info["emotion_classifier"]["summary"]
    (kept,), _ = run_jobs({"trim": False}, [ChatJob(CUT, s8)])
    assert kept.text == "you said: I failed my exam. I studied" and "trim" not in kept.info
    assert "emotion_classifier" not in kept.info  # no classifier, no description


def test_a_streamed_row_near_its_budget_sends_whole_sentences_only():
    s8 = EchoGenerator().default_settings.model_copy(update={"max_new_tokens": 8})
    (r,), (sent,) = run_jobs({}, [ChatJob(CUT, s8, stream=True)])
    assert sent == r.text == "you said: I failed my exam."  # the dropped tail was never streamed
    assert r.info["trim"]["stream_corrected"] is False
    # no hold-back margin: the tail is partly sent before the budget ends the row
    (r,), (sent,) = run_jobs({}, [ChatJob(CUT, s8, stream=True)], hold_tokens=0)
    assert sent == "you said: I failed my exam. I" and r.text == "you said: I failed my exam."
    assert r.info["trim"]["stream_corrected"] is True  # the final event's trim.text corrects the stream


def test_stop_text_holds_unfinished_sentences_within_the_budget_margin():
    from empathkit.serving.batcher import StopText

    st = StopText(budget=6, hold_tokens=3)
    assert [st.feed(d) for d in ("Hi", " there.", " How", " are", " you?")] == ["Hi", " there.", "", "",
                                                                                  " How are you?"]
    plain = StopText()
    assert [plain.feed(d) for d in ("Hi", " there.", " How")] == ["Hi", " there.", " How"]
