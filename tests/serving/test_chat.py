"""Terminal chat: commands, emotion display, safety, history kept within the context budget, the CLI entry."""

from __future__ import annotations

import io

import pytest
from serving_helpers import RecordingGenerator, stub_detector, tiny_gen  # noqa: F401 (fixtures)

from empathkit.models.trim import trim_to_sentence
from empathkit.serving.chat import ChatSession, QuitChat, run_terminal


def test_turns_commands_and_emotion(tiny_gen, stub_detector):
    gen = RecordingGenerator(tiny_gen)
    s = ChatSession(gen, detector=stub_detector)
    r = s.respond("I lost my keys again")
    assert r.text.strip() and (r.emotion, r.emotion_source) == ("sad", "classifier")
    assert [m["role"] for m in s.history] == ["user", "assistant"]
    assert "forced" in s.command("/emotion joyful") and s.forced_emotion == "joyful"
    assert "unknown emotion" in s.command("/emotion hangry") and s.forced_emotion == "joyful"
    assert "0.7" in s.command("/gate 0.7") and s.gate == 0.7
    assert "between 0 and 1" in s.command("/gate 2") and s.gate == 0.7
    r = s.respond("and then it rained")
    assert (r.emotion, r.emotion_source) == ("joyful", "forced")
    assert gen.calls[-1]["gates"] == [0.7] and gen.calls[-1]["emotions"] == ["joyful"]
    assert len(gen.calls[-1]["settings"].model_dump()) and gen.calls[-1]["n"] == 1
    s.command("/emotion auto")
    s.command("/gate auto")
    assert s.forced_emotion is None and s.gate is None
    assert "reset" in s.command("/reset") and s.history == []
    assert "unknown command" in s.command("/dance")
    with pytest.raises(QuitChat):
        s.command("/quit")


def test_no_classifier_reports_none(tiny_gen):
    r = ChatSession(tiny_gen).respond("hello there")
    assert (r.emotion, r.emotion_prob, r.emotion_source) == ("none", None, "none")


def test_crisis_turn_gets_safety_reply_without_the_model(tiny_gen):
    gen = RecordingGenerator(tiny_gen)
    s = ChatSession(gen)
    r = s.respond("My boyfriend choked me last night")
    assert r.safety.flagged and r.safety.category == "abuse" and "not your fault" in r.text
    assert gen.calls == [] and s.history[-1]["content"] == r.text


def test_history_stays_within_the_context_budget(tiny_gen):
    from empathkit.models.chat import render

    settings = tiny_gen.default_settings.model_copy(update={"max_prompt_tokens": 90, "max_new_tokens": 2})
    s = ChatSession(tiny_gen, settings)
    system = [{"role": "system", "content": tiny_gen.system_prompt()}]
    lengths = []
    for i in range(5):
        s.respond(f"turn number {i}: here is a sentence about my day")
        lengths.append(len(s.history))
        n_tokens = len(tiny_gen.tokenizer(render(tiny_gen.tokenizer, system + s.history))["input_ids"])
        assert n_tokens <= 90 or len(s.history) == 2
    assert lengths[-1] < 10 and max(lengths) > 2  # history grew, then was trimmed
    assert s.history[0]["role"] == "user" and "turn number 4" in s.history[-2]["content"]


def test_terminal_loop(tiny_gen, stub_detector, monkeypatch):
    from rich.console import Console

    lines = iter(["/emotion proud", "I won the race!", "", "/quit"])
    monkeypatch.setattr("builtins.input", lambda *a: next(lines))
    out = io.StringIO()
    gen = RecordingGenerator(tiny_gen, info={"gate": 0.25})
    run_terminal(ChatSession(gen, detector=stub_detector), Console(file=out, width=200))
    text = out.getvalue()
    assert "emotion forced to proud" in text and "emotion: proud (forced)" in text and "bot >" in text
    (call,) = gen.calls
    reply = call["replies"][0].text
    assert call["streamed"] and reply.strip() and text.count(reply) == 1  # printed as it came, once
    assert text.index("emotion: proud") < text.index("bot >") < text.index(reply) < text.index("gate: 0.25")


def test_respond_streams_deltas_that_add_up_to_the_reply(tiny_gen, stub_detector):
    starts, deltas = [], []
    s = ChatSession(tiny_gen, detector=stub_detector)
    r = s.respond("I am happy today", on_text=deltas.append, on_start=starts.append)
    assert [(t.emotion, t.emotion_source) for t in starts] == [("joyful", "classifier")]
    assert len(deltas) >= 2 and r.finish_reason in ("stop", "length")
    if "trim" in r.info:  # cut by the budget: the reply is the streamed text trimmed (or marked) at a sentence end
        assert r.finish_reason == "length" and r.info["trim"]["untrimmed_text"] == "".join(deltas).strip()
        assert r.text == trim_to_sentence("".join(deltas)).text
    else:
        assert "".join(deltas).strip() == r.text


def test_chat_cli(tiny_gen, monkeypatch):
    from typer.testing import CliRunner

    import empathkit.cli.serve as serve_cli
    from empathkit.cli.main import app

    monkeypatch.setattr(serve_cli, "build_generator", lambda method, run, max_new_tokens, precision="auto", backend="transformers", gguf=None: tiny_gen)
    res = CliRunner().invoke(app, ["chat", "--emotion-classifier", "none", "--gate", "0.5"],
                             input="I want to kill myself\n/quit\n")
    assert res.exit_code == 0, res.output
    assert "gate forced to 0.5" in res.output and "safety: suicide" in res.output
