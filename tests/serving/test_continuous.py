"""Continuous batching (serving/continuous.py, models/stepping.py): requests that join and leave the running batch
mid-way get exactly the completion they get alone (greedy; also through a LoRA adapter and on SmolLM2), streaming,
stop strings, cancellation, timeouts, the queue bound, shutdown (what SIGTERM calls), the fallback to
micro-batching for generators without step-level decoding."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
import time

import httpx
import pytest
import torch
from serving_helpers import EchoGenerator, RecordingGenerator, tiny_gen  # noqa: F401

from empathkit.serving.batcher import ChatJob, JobTimeout, MicroBatcher, QueueFull
from empathkit.serving.continuous import ContinuousBatcher, step_decoder

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")

CONVS = [[{"role": "user", "content": t}] for t in (
    "I am happy today.", "My cat died, it was so sad and I cried all night long.", "Hi",
    "We won the game!", "Nothing works and my boss shouts at me every day now.")]


@pytest.fixture(scope="module")
def sharp_gen():
    """The prompt baseline on a tiny random Llama whose weights are scaled x8: greedy replies are varied words (the
    plain tiny model repeats a newline, which strips to ''), so comparing texts tests something."""
    from empathkit.methods.prompt import load
    from empathkit.models.backbones import tiny_random_llama

    model, tok = tiny_random_llama(seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)
    gen = load({"template": "plain"}, model=model.eval(), tokenizer=tok)
    gen.default_settings = gen.default_settings.model_copy(update={"max_new_tokens": 12})
    return gen


def _alone(gen, conv, **upd):
    return gen.chat([conv], gen.default_settings.model_copy(update=upd))[0]


@pytest.mark.parametrize("prefix_cache", [True, False])
def test_rows_joining_and_leaving_get_their_own_completion(sharp_gen, prefix_cache):
    gen = sharp_gen
    dec = step_decoder(gen)
    budgets = [12, 5, 12, 7, 10]
    reqs = []
    for i, (conv, b) in enumerate(zip(CONVS, budgets)):
        s = gen.default_settings.model_copy(update={"max_new_tokens": b, "prefix_cache": prefix_cache})
        r = dec.requests([conv], s, [None])[0]
        r.handle = i
        reqs.append(r)
    got = {}

    def collect(done):
        got.update({f.request.handle: f for f in done})

    collect(dec.add(reqs[:2]))  # two start together (the prefill gives each its first token)
    for _ in range(3):
        collect(dec.step())
    collect(dec.add([reqs[2]]))  # one joins mid-way
    assert dec.size == 3 and not got
    for _ in range(2):
        collect(dec.step())  # row 1 (budget 5) leaves at the first of these
    assert set(got) == {1} and dec.size == 2
    collect(dec.add(reqs[3:]))  # two more join after one left
    assert dec.size == 4
    while dec.size:
        collect(dec.step())
    for i, conv in enumerate(CONVS):
        alone = _alone(gen, conv, max_new_tokens=budgets[i])
        mine = got[i].reply
        assert mine.text and mine.text == alone.text, i
        assert (mine.completion_tokens, mine.prompt_tokens, mine.finish_reason) == \
            (alone.completion_tokens, alone.prompt_tokens, alone.finish_reason)
    assert dec.cache is None and dec.mask is None  # everything left


def test_sampled_rows_depend_on_their_own_seed_not_on_the_batch(sharp_gen):
    dec = step_decoder(sharp_gen)
    s = sharp_gen.default_settings.model_copy(update={"do_sample": True, "temperature": 1.0, "top_p": 0.9, "seed": 3})

    def run(convs, join_at=2):
        reqs = [dec.requests([c], s, [None])[0] for c in convs]
        for i, r in enumerate(reqs):
            r.handle = i
        got = {f.request.handle: f.reply.text for f in dec.add(reqs[:1])}
        for _ in range(join_at):
            got.update({f.request.handle: f.reply.text for f in dec.step()})
        got.update({f.request.handle: f.reply.text for f in dec.add(reqs[1:])})
        while dec.size:
            got.update({f.request.handle: f.reply.text for f in dec.step()})
        return got

    alone = run(CONVS[:1])[0]
    shared = run(CONVS[:3])
    assert shared[0] == alone and alone != _alone(sharp_gen, CONVS[0])  # a sampled reply, not the greedy one
    assert shared[1] != shared[2]


def test_a_lora_wrapped_model_decodes_the_same_step_by_step(sharp_gen):
    """Trained SFT / EmPO runs are PEFT-wrapped causal LMs: the step path must give their ``chat`` replies too."""
    from peft import LoraConfig, get_peft_model

    from empathkit.methods.causal import CausalLMGenerator

    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft = get_peft_model(copy.deepcopy(sharp_gen.model), lora).eval()
    gen = CausalLMGenerator(peft, sharp_gen.tokenizer, "Be kind.", default_settings=sharp_gen.default_settings)
    dec = step_decoder(gen)
    reqs = [dec.requests([c], gen.default_settings, [None])[0] for c in CONVS[:3]]
    for i, r in enumerate(reqs):
        r.handle = i
    got = {f.request.handle: f.reply for f in dec.add(reqs[:2])}
    got.update({f.request.handle: f.reply for f in dec.step()})
    got.update({f.request.handle: f.reply for f in dec.add(reqs[2:])})
    while dec.size:
        got.update({f.request.handle: f.reply for f in dec.step()})
    assert [got[i].text for i in range(3)] == [_alone(gen, c).text for c in CONVS[:3]]
    assert got[0].text != _alone(sharp_gen, CONVS[0]).text  # the adapter changed the replies


def _run(batcher, coro_fn):
    async def main():
        await batcher.start()
        try:
            return await coro_fn(batcher)
        finally:
            await batcher.stop()
    return asyncio.run(main())


def _slow_steps(batcher, seconds=0.01):
    """Make every decoding step take a little time, so requests submitted later join a running batch."""
    step = batcher.decoder.step

    def slow():
        time.sleep(seconds)
        return step()
    batcher.decoder.step = slow


def test_continuous_batcher_requests_join_mid_batch_streamed_and_plain(sharp_gen):
    gen = sharp_gen
    s = gen.default_settings
    b = ContinuousBatcher(gen, max_batch=8, max_wait_ms=0, queue_size=8, trim=False)
    assert b.scheduler == "continuous"
    _slow_steps(b)

    async def main(b):
        first = b.submit(ChatJob(CONVS[1], s.model_copy(update={"max_new_tokens": 24}), emotion="none", stream=True))
        deltas = [await b.next_delta(first, None)]  # the first row is generating
        late = [b.submit(ChatJob(CONVS[0], s.model_copy(update={"max_new_tokens": 5}))),
                b.submit(ChatJob(CONVS[3], s, stream=True))]
        results = await asyncio.gather(b.wait(first, 60), *(b.wait(j, 60) for j in late))
        while (d := await b.next_delta(first, None)) is not None:
            deltas.append(d)
        streamed = []
        while (d := await b.next_delta(late[1], None)) is not None:
            streamed.append(d)
        return results, "".join(deltas), "".join(streamed)

    (r_first, r_short, r_stream), text_first, text_stream = _run(b, main)
    assert r_first.text == _alone(gen, CONVS[1], max_new_tokens=24).text == text_first
    assert r_short.text == _alone(gen, CONVS[0], max_new_tokens=5).text
    assert r_stream.text == _alone(gen, CONVS[3]).text == text_stream
    assert r_first.batch_size == 3 and r_first.emotion_source == "request"
    assert b.stats["prefills"] == 2 and b.stats["largest_batch"] == 3 and b.stats["streamed_batched"] == 2
    assert b.stats["rows"] > b.stats["batches"]  # rows per step > 1 on average


def test_stop_strings_cancellation_and_timeouts_end_only_their_row(sharp_gen):
    gen = sharp_gen
    s = gen.default_settings.model_copy(update={"max_new_tokens": 20})
    full = _alone(gen, CONVS[4], max_new_tokens=20).text
    stop = full.split()[2]  # a word in the middle of the reply
    b = ContinuousBatcher(gen, max_batch=8, max_wait_ms=50, queue_size=8, trim=False)
    _slow_steps(b)

    async def main(b):
        stopped = b.submit(ChatJob(CONVS[4], s, stream=True, stops=[stop]))
        leaver = b.submit(ChatJob(CONVS[1], s, stream=True))
        timed = b.submit(ChatJob(CONVS[2], s.model_copy(update={"max_new_tokens": 200}), stream=True))
        other = b.submit(ChatJob(CONVS[0], s))
        await b.next_delta(leaver, None)
        leaver.cancelled = True  # the client went away
        deadline = time.monotonic() + 0.2  # 200 tokens at >= 10 ms a step cannot make it
        with pytest.raises(JobTimeout):
            while await b.next_delta(timed, deadline) is not None:
                pass
        sent = []
        while (d := await b.next_delta(stopped, None)) is not None:
            sent.append(d)
        return await asyncio.gather(b.wait(stopped, 60), b.wait(leaver, 60), b.wait(other, 60)), "".join(sent)

    (r_stop, r_leave, r_other), sent = _run(b, main)
    assert r_stop.finish_reason == "stop" and r_stop.text == full[:full.index(stop)] and stop not in sent
    assert r_leave.finish_reason == "cancelled" and r_leave.completion_tokens < 20
    assert r_other.text == _alone(gen, CONVS[0], max_new_tokens=20).text
    assert b.stats["cancelled"] >= 2 and b.stats["timeouts"] == 1 and b.in_flight == 0


def test_queue_bound_and_fallback_to_micro_batching(sharp_gen):
    class Gated(type(sharp_gen)):  # a per-batch conditioning (like ECG-LoRA's gate): no step-level decoding
        def conditioning(self, controls):
            return contextlib.nullcontext()

    gated = Gated(sharp_gen.model, sharp_gen.tokenizer, sharp_gen.config)
    for g in (RecordingGenerator(sharp_gen), EchoGenerator(), gated):
        assert step_decoder(g) is None and ContinuousBatcher(g).scheduler == "micro"
    b = ContinuousBatcher(EchoGenerator(), max_batch=4, max_wait_ms=0, queue_size=1)

    async def main(b):
        job = b.submit(ChatJob(CONVS[0], b.generator.default_settings))
        with pytest.raises(QueueFull):
            b.submit(ChatJob(CONVS[0], b.generator.default_settings))
        return await b.wait(job, 30)

    assert _run(b, main).text == "you said: I am happy today."
    c = ContinuousBatcher(sharp_gen, queue_size=1)

    async def full(c):
        job = c.submit(ChatJob(CONVS[0], sharp_gen.default_settings))
        with pytest.raises(QueueFull):
            c.submit(ChatJob(CONVS[1], sharp_gen.default_settings))
        await c.wait(job, 30)
    _run(c, full)
    assert c.stats["rejected"] == 1 and isinstance(c, MicroBatcher)


def test_server_reports_the_scheduler_and_serves_both(sharp_gen):
    from empathkit.serving.server import BackgroundServer, create_app

    texts = {}
    for sched in ("continuous", "micro"):
        app = create_app(sharp_gen, {"model_id": "m", "scheduler": sched})
        with BackgroundServer(app) as url:
            assert httpx.get(url + "/health").json()["scheduler"] == sched
            body = {"model": "m", "messages": CONVS[3], "max_tokens": 12, "temperature": 0}
            texts[sched] = httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()
    assert texts["continuous"]["choices"][0]["message"] == texts["micro"]["choices"][0]["message"]


def test_shutdown_cancels_running_rows_at_their_next_step(tiny_gen):
    """What SIGTERM does (runtime.py calls ``app.state.cancel_all``; the signal wiring is tested in test_abuse.py):
    every running row ends at its next step with finish_reason "cancelled" and is answered."""
    from empathkit.serving.server import BackgroundServer, create_app

    steps = []

    def slow(*_):  # 20 ms a step: the rows are still running when the server shuts down
        steps.append(1)
        time.sleep(0.02)
    hook = tiny_gen.model.register_forward_hook(slow)
    out = {}
    try:
        app = create_app(tiny_gen, {"model_id": "tiny", "max_tokens_limit": 400, "timeout": 120})
        assert app.state.batcher.scheduler == "continuous"
        with BackgroundServer(app) as url:
            def long_request(i):
                r = httpx.post(url + "/v1/chat/completions", timeout=60,
                               json={"model": "tiny", "messages": CONVS[i], "max_tokens": 400, "temperature": 0})
                out[i] = (r.status_code, r.json())

            threads = [threading.Thread(target=long_request, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while httpx.get(url + "/health").json()["stats"]["largest_batch"] < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            t0 = time.monotonic()
            app.state.loop.call_soon_threadsafe(app.state.cancel_all)
            for t in threads:
                t.join(30)
            took = time.monotonic() - t0
    finally:
        hook.remove()
    assert took < 5, took
    assert [out[i][0] for i in range(2)] == [200, 200], out
    assert all(out[i][1]["choices"][0]["finish_reason"] == "cancelled" for i in range(2)), out
    assert len(steps) < 400


@pytest.mark.integration
def test_smollm2_rows_joining_mid_batch_match_chat_alone(smollm2):
    from empathkit.methods.prompt import load

    model, tok = smollm2
    gen = load({"template": "structured-v1"}, model=model, tokenizer=tok)
    s = gen.default_settings.model_copy(update={"max_new_tokens": 16})
    dec = step_decoder(gen)
    reqs = [dec.requests([c], s.model_copy(update={"max_new_tokens": n}), [None])[0]
            for c, n in zip(CONVS[:3], (16, 6, 12))]
    for i, r in enumerate(reqs):
        r.handle = i
    got = {f.request.handle: f.reply for f in dec.add(reqs[:1])}
    for k in (1, 2):
        for _ in range(3):
            got.update({f.request.handle: f.reply for f in dec.step()})
        got.update({f.request.handle: f.reply for f in dec.add([reqs[k]])})
    while dec.size:
        got.update({f.request.handle: f.reply for f in dec.step()})
    for i, n in enumerate((16, 6, 12)):
        alone = gen.chat([CONVS[i]], s.model_copy(update={"max_new_tokens": n}))[0]
        assert got[i].text == alone.text and got[i].finish_reason == alone.finish_reason, i




def test_no_repeat_ngram_rows_match_chat_alone():
    """The n-gram ban is applied per row over prompt + reply, as generate does: rows decoded together give each
    conversation's ``Generator.chat`` text, and the ban does change them (a tiny model scaled x2 repeats words)."""
    from empathkit.methods.prompt import load
    from empathkit.models.backbones import tiny_random_llama

    model, tok = tiny_random_llama(seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    gen = load({"template": "plain"}, model=model.eval(), tokenizer=tok)
    s = gen.default_settings.model_copy(update={"max_new_tokens": 16, "no_repeat_ngram_size": 2})
    dec = step_decoder(gen)
    reqs = dec.requests(CONVS, s, [None] * len(CONVS))
    for i, r in enumerate(reqs):
        r.handle = i
    got = {f.request.handle: f.reply.text for f in dec.add(reqs[:2])}
    got.update({f.request.handle: f.reply.text for f in dec.step()})
    got.update({f.request.handle: f.reply.text for f in dec.add(reqs[2:])})  # joining mid-batch
    while dec.size:
        got.update({f.request.handle: f.reply.text for f in dec.step()})
    changed = 0
    for i, conv in enumerate(CONVS):
        assert got[i] == gen.chat([conv], s)[0].text, i
        changed += got[i] != gen.chat([conv], s.model_copy(update={"no_repeat_ngram_size": 0}))[0].text
    assert changed >= 3


def test_beam_search_is_served_by_micro_batching(tiny_gen):  # noqa: F811
    """Beam search is not decoded step by step: the generator offers no step decoder (the server micro-batches,
    and says so), and a StepDecoder asked for it refuses with a clear error rather than decoding other settings."""
    from empathkit.errors import ConfigError

    dec = step_decoder(tiny_gen)
    with pytest.raises(ConfigError, match="scheduler micro"):
        dec.requests(CONVS[:1], tiny_gen.default_settings.model_copy(update={"num_beams": 2}), [None])
    beam = copy.copy(tiny_gen)
    beam.default_settings = tiny_gen.default_settings.model_copy(update={"num_beams": 2})
    assert step_decoder(beam) is None
    assert ContinuousBatcher(beam).scheduler == "micro"
