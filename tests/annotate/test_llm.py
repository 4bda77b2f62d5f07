"""The LLM annotator against a fake OpenAI-compatible server on 127.0.0.1: malformed JSON, wrong tags, timeouts."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from empathkit.annotate.base import Rejected
from empathkit.annotate.llm import LLMClient, LLMIntents, LLMTagger
from empathkit.errors import ConfigError
from empathkit.types import Turn


class FakeLLM(BaseHTTPRequestHandler):
    """Scripted by the tokens it is sent: MALFORMED → prose once, then a good reply; WRONG → always a wrong number
    of tags; BADTAG → an unknown tag; SLOW → sleeps past the client timeout; fenced → a good reply in a code fence."""

    calls: Counter = Counter()

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = json.loads(body["messages"][1]["content"])
        key = json.dumps(user)
        FakeLLM.calls[key] += 1
        if "reply" in user:
            text = user["reply"]
            content = json.dumps({"intent": "hugging" if "HUG" in text else " Questioning "})
        else:
            toks = user["tokens"]
            good = ["<em>" if t == "sad" else "<noem>" for t in toks]
            if "SLOW" in toks:
                time.sleep(0.6)
            if "MALFORMED" in toks and FakeLLM.calls[key] == 1:
                content = "Sure! Here are the tags: <em> <noem>"
            elif "WRONG" in toks:
                content = json.dumps({"tags": good[:-1]})
            elif "BADTAG" in toks:
                content = json.dumps({"tags": ["<EMO>"] * len(toks)})
            elif "fenced" in toks:
                content = "```json\n" + json.dumps({"tags": good}) + "\n```"
            else:
                content = json.dumps({"tags": good})
        out = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        try:
            self.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeLLM)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def client(url, **kw):
    cfg = {"base_url": url, "model": "fake", "timeout": 0.3, "retries": 2, "backoff": 0, "max_workers": 4} | kw
    return LLMClient.from_config(cfg)


def test_tags_retries_and_rejections(server):
    FakeLLM.calls.clear()
    c = client(server)
    tagger = LLMTagger(c)
    out = tagger.tag([["I", "am", "sad"], ["MALFORMED", "sad"], ["WRONG", "x"], ["SLOW", "sad"], ["BADTAG"],
                      ["fenced", "sad"]])
    assert out[0] == ["<noem>", "<noem>", "<em>"]
    assert out[1] == ["<noem>", "<em>"]  # malformed once, good on the retry
    assert out[2] == Rejected("wrong-tags", out[2].detail) and "expected 2 tags" in out[2].detail
    assert isinstance(out[3], Rejected) and out[3].reason == "timeout"
    assert isinstance(out[4], Rejected) and out[4].reason == "wrong-tags"
    assert out[5] == ["<noem>", "<em>"]
    # every failed reply is counted: 1 malformed + 3 wrong + 3 timeouts + 3 bad tags; 3 attempts at most per turn
    assert c.rejected == Counter({"malformed-json": 1, "wrong-tags": 6, "timeout": 3})
    assert max(FakeLLM.calls.values()) == 3
    assert tagger.annotator == "llm[fake]@reason-v1"


def test_intents_validated(server):
    c = client(server, retries=1)
    lab = LLMIntents(c).label(["What happened?", "HUG"])
    assert lab[0] == "questioning"
    assert isinstance(lab[1], Rejected) and lab[1].reason == "wrong-intent" and c.rejected["wrong-intent"] == 2


def test_unreachable_and_unconfigured(monkeypatch):
    monkeypatch.delenv("EMPATHKIT_LLM_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="base_url"):
        LLMClient.from_config({})
    with pytest.raises(ConfigError, match="llm.retries"):
        LLMClient.from_config({"base_url": "http://127.0.0.1:9", "retries": -1})
    c = client("http://127.0.0.1:9/v1", retries=0)  # nothing listens on port 9
    assert LLMTagger(c).tag([["x"]])[0].reason in ("http-error", "timeout")


def test_pipeline_skips_rejected_dialogue_and_resume_retries(server, tmp_path, dialogues):
    from empathkit.annotate.pipeline import Annotator, annotate
    from empathkit.annotate.store import read_annotated, read_meta
    from empathkit.types import Dialogue, Turn

    c = client(server, retries=1)
    ann = Annotator(LLMTagger(c), LLMIntents(c), "llm")
    bad = Dialogue("bad", "sad", "", (Turn("speaker", "WRONG so sad"), Turn("listener", "Oh no.")), "train")
    ds = dialogues[:3] + [bad]
    rep = annotate(ds, ann, tmp_path / "a.jsonl", progress=False)
    assert rep.written == 3 and rep.skipped_dialogues == Counter({"rejected annotation": 1})
    assert rep.rejected_turns == Counter({"wrong-tags": 1}) and rep.rejected_replies == {"wrong-tags": 2}
    assert [d.id for d in read_annotated(tmp_path / "a.jsonl")] == [d.id for d in dialogues[:3]]
    meta = read_meta(tmp_path / "a.jsonl")
    assert meta["annotator"] == "llm[fake]@reason-v1+llm[fake]@intent-v1"
    assert meta["counts"]["rejected_replies"] == {"wrong-tags": 2}
    rep2 = annotate(ds, ann, tmp_path / "a.jsonl", progress=False)  # resume: only the rejected one is retried
    assert rep2.resumed == 3 and rep2.written == 0 and rep2.rejected_replies == {"wrong-tags": 2}


def test_agreement_report_llm_row_on_a_sample(server, tmp_path, dialogues, monkeypatch):
    """The LLM on the first N turns of the sample only: its pairs are scored on those turns, its rejected turns are
    counted by reason (and left out of the scores), the report names the prompt versions and the endpoint's model."""
    from empathkit.annotate import agreement, intents, lexicon
    from empathkit.data.jsonl import write_jsonl
    from empathkit.types import Dialogue

    from _annotate_fakes import FixedIntents, KeywordTagger

    class Lexicon(KeywordTagger):  # stands in for the NRC lexicon tagger
        annotator = "lexicon@1"

        def __init__(self, *a, **k):
            super().__init__(("sad", "WRONG"))

    monkeypatch.setattr(lexicon, "LexiconTagger", Lexicon)
    monkeypatch.setattr(intents, "ClassifierIntents", lambda *a, **k: FixedIntents())
    bad = Dialogue("bad", "sad", "", (Turn("speaker", "WRONG so sad"), Turn("listener", "What happened?")), "test")
    sad = Dialogue("sad", "sad", "", (Turn("speaker", "I am sad today."), Turn("listener", "Why?"),
                                       Turn("speaker", "My cat is sad and so am I"), Turn("listener", "Oh no.")), "test")
    ds = [sad] + [Dialogue(d.id, d.emotion, d.situation, d.turns, "test") for d in dialogues[:3]]
    src = tmp_path / "test.jsonl"
    write_jsonl([bad] + ds, src)
    r = agreement.agreement_report(10, source=str(src), era_path=str(tmp_path / "no-era"), llm_sample=3,
                                   llm_config={"base_url": server, "model": "fake", "timeout": 2, "retries": 1,
                                               "backoff": 0})
    llm = r["llm"]
    assert llm["sample"] == {"speaker_turns": 3, "listener_turns": 3}
    assert llm["prompt_versions"] == {"reason": "reason-v1", "intent": "intent-v1"}
    assert llm["rejected_turns"]["tags"] == {"wrong-tags": 1} and llm["rejected_replies"] == {"wrong-tags": 2}
    assert llm["requests"] == 2 + 2 + 3  # the rejected turn twice (1 retry), 2 good speaker turns, 3 listener turns
    assert r["tags"]["lexicon vs llm"]["turns"] == 2  # the rejected turn is left out, not scored as disagreement
    assert r["tags"]["lexicon vs llm"]["token"]["f1"] == 1.0  # the fake tags 'sad' as the stand-in lexicon does
    assert r["tags"]["lexicon vs llm"]["token"]["tokens"] == 5 + 8  # "I am sad today ." + 8 words
    assert r["intents"]["intent-classifier vs llm"]["n"] == 3.0
    assert r["sample"]["speaker_turns"] > 3 and r["summary"]["llm: rejected speaker turns"] == 1
    assert "ERA not included" in " ".join(r["notes"])
    assert isinstance(llm["endpoint_models"], str)  # the fake has no GET /models: the error, as text


def test_reply_cache_replays_the_same_replies(server, tmp_path):
    FakeLLM.calls.clear()
    turns = [["I", "am", "sad"], ["WRONG", "x"], ["MALFORMED", "sad"]]
    first = client(server, retries=1, cache=str(tmp_path / "replies.jsonl"))
    out = LLMTagger(first).tag(turns)
    assert first.requests == 1 + 2 + 2 and first.cached == 0
    (tmp_path / "replies.jsonl").open("a").write('{"key": "partial')  # a killed run's last line
    again = client(server, retries=1, cache=str(tmp_path / "replies.jsonl"))
    assert LLMTagger(again).tag(turns) == out and again.rejected == first.rejected  # same replies, same rejections
    assert again.requests == 0 and again.cached == 5 and sum(FakeLLM.calls.values()) == 5


def test_agreement_pair_without_common_turns_has_no_score(server, tmp_path, monkeypatch):
    from empathkit.annotate import agreement, intents, lexicon
    from empathkit.data.jsonl import write_jsonl
    from empathkit.types import Dialogue

    from _annotate_fakes import FixedIntents, KeywordTagger

    monkeypatch.setattr(lexicon, "LexiconTagger", KeywordTagger)
    monkeypatch.setattr(intents, "ClassifierIntents", lambda *a, **k: FixedIntents())
    bad = Dialogue("bad", "sad", "", (Turn("speaker", "WRONG so sad"), Turn("listener", "HUG")), "test")
    write_jsonl([bad], tmp_path / "t.jsonl")
    r = agreement.agreement_report(5, source=str(tmp_path / "t.jsonl"), era_path=str(tmp_path / "no-era"),
                                   llm_config={"base_url": server, "model": "fake", "timeout": 2, "retries": 0})
    assert r["tags"]["lexicon vs llm"]["turns"] == 0 and "tags lexicon vs llm: token F1" not in r["summary"]
    assert "tags lexicon vs llm: no speaker turn tagged by both, no score" in r["notes"]
    assert "intents intent-classifier vs llm: accuracy" not in r["summary"]
    assert r["summary"]["llm: rejected speaker turns"] == 1 and r["summary"]["llm: rejected listener turns"] == 1
