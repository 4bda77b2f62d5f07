"""REG's retrieval half (empathkit/methods/reg/): emotion attributes, the train-only corpus, the FAISS index with
attribute re-ranking, save/load, the Table 5 alignment, the `empathkit retrieve` CLI. Written fixtures
(`make_dialogues`), a word-hashing fake encoder, keyword fake EPITOME classifiers; the real MiniLM where installed."""

from __future__ import annotations

import dataclasses
import json
import re
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

import empathkit.classifiers as clf_pkg
import empathkit.methods.reg.index as reg_index
from empathkit.data.jsonl import write_jsonl
from empathkit.errors import ConfigError, ResourceMissing
from empathkit.methods.reg.analysis import alignment, alignment_table, exemplar_emotion_vote
from empathkit.methods.reg.attributes import (AttributeTagger, attribute_texts, compute_attributes,
                                              load_epitome_classifiers, sentiment_level, vader_compound)
from empathkit.methods.reg.corpus import corpus_examples
from empathkit.methods.reg.index import (ExemplarIndex, RandomRetriever, build_index,
                                         resolve_index_dir)
from empathkit.testing import make_dialogues
from empathkit.types import Exemplar
from tests.conftest import requires_minilm


# ----------------------------------------------------------------------------------------------------------- fakes
class HashEncoder:
    """Bag of words hashed into 64 dims (cosine = word overlap); counts its calls."""

    dim = 64

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size=64, **_):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9]+", t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        out[:, -1] += 0.01  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class DictEncoder:
    """Exact text → vector (hand-made geometry)."""

    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, batch_size=64, **_):
        return np.asarray([self.vectors[t] for t in texts], dtype=np.float32)


class KeywordEpitome:
    """A fake EPITOME classifier: level 2 / 1 / 0 by keywords in the response side of the pair."""

    def __init__(self, high=(), mid=()):
        self.high, self.mid, self.seen = high, mid, []

    def predict(self, pairs, batch_size=64):
        self.seen.extend(pairs)
        out = []
        for _seeker, text in pairs:
            t = text.lower()
            out.append(("2" if any(k in t for k in self.high) else "1" if any(k in t for k in self.mid) else "0", 0.9))
        return out


def fake_classifiers():
    return {"presence": KeywordEpitome(high=("sorry", "love", "excited", "frightening"), mid=("hope",)),
            "interpretation": KeywordEpitome(high=("must",), mid=("sounds",)),
            "exploration": KeywordEpitome(high=("?",), mid=("what",))}


def fake_tagger(source="context"):
    return AttributeTagger(fake_classifiers(), source=source)


def ctx(ex):
    return [t.text for t in ex.context]


@pytest.fixture
def corpus():
    return corpus_examples(make_dialogues())


@pytest.fixture
def built(tmp_path, corpus):
    enc = HashEncoder()
    idx = build_index({"encoder": "hash"}, tmp_path / "idx", examples=corpus, encoder=enc, tagger=fake_tagger(),
                      progress=False)
    return idx, enc, tmp_path / "idx"


# ------------------------------------------------------------------------------------------------------ attributes
def test_vader_binning_thresholds():
    assert sentiment_level(0.05) == "high" and sentiment_level(0.0499) == "mid"
    assert sentiment_level(-0.05) == "low" and sentiment_level(-0.0499) == "mid"
    assert sentiment_level(0.0) == "mid" and sentiment_level(1.0) == "high" and sentiment_level(-1.0) == "low"
    assert sentiment_level(vader_compound("This is wonderful, I love it!")) == "high"
    assert sentiment_level(vader_compound("This is terrible and I hate it.")) == "low"
    assert sentiment_level(vader_compound("The car is blue.")) == "mid"


def test_attribute_sources():
    c = ["I lost my job.", "Oh no, what happened?", "They closed the office."]
    assert attribute_texts(c, "", "context") == (" ".join(c), (c[1], c[2]))
    assert attribute_texts(c[:1], "", "context") == (c[0], ("", c[0]))
    assert attribute_texts(c, "So sorry.", "response") == ("So sorry.", (c[2], "So sorry."))
    assert attribute_texts(c, "So sorry.", "both") == (" ".join(c + ["So sorry."]), (c[2], "So sorry."))
    rows = compute_attributes([(c, "That must be hard, what will you do?")], fake_tagger("response"), progress=False)
    assert {k: rows[0][k] for k in ("presence", "interpretation", "exploration")} == \
        {"presence": "low", "interpretation": "high", "exploration": "high"}
    assert rows[0]["sentiment"] in ("low", "mid", "high") and "sentiment_compound" in rows[0]


def test_missing_epitome_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("EMPATHKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(clf_pkg, "_LOADED", {})
    for k in ("ER", "IP", "EX"):
        monkeypatch.delenv(f"EMPATHKIT_CLASSIFIER_EPITOME_{k}", raising=False)
    with pytest.raises(ResourceMissing) as e:
        load_epitome_classifiers()
    msg = str(e.value)
    assert "\n" not in msg and "empathkit classifiers train epitome-er epitome-ip epitome-ex" in msg


# ---------------------------------------------------------------------------------------------------------- corpus
def test_corpus_is_train_only_and_excludes_own_conversation(tmp_path, monkeypatch):
    ds = make_dialogues()
    held = {"sad-1": "test", "joyful-2": "valid"}
    ds = [dataclasses.replace(d, split=held.get(d.id, "train")) for d in ds]
    ids = {e.dialogue_id for e in corpus_examples(ds)}
    assert not ids & set(held) and len(ids) == len(ds) - 2
    # through the configured data path (a JSONL file with split fields)
    write_jsonl(ds, tmp_path / "d.jsonl")
    idx = build_index({"data": {"source": str(tmp_path / "d.jsonl")}, "attributes": {"source": "none"}},
                      tmp_path / "idx", encoder=HashEncoder(), progress=False)
    assert {e.attributes["dialogue_id"] for e in idx.exemplars} == ids
    assert all(e.attributes["emotion"] for e in idx.exemplars)
    # a query from a corpus conversation finds itself first unless its dialogue id is excluded
    q = [e for e in idx.exemplars if e.attributes["dialogue_id"] == "angry-3"][0]
    assert idx.search([list(q.context)], k=1, mode="semantic")[0][0].attributes["dialogue_id"] == "angry-3"
    res = idx.search([list(q.context)] * 2, k=len(idx), mode="semantic", exclude_dialogue_ids=["angry-3", None])
    assert "angry-3" not in {e.attributes["dialogue_id"] for e in res[0]}
    assert len(res[0]) == len(idx) - sum(d == "angry-3" for d in idx.dialogue_ids) and len(res[1]) == len(idx)
    with pytest.raises(ConfigError, match="semantic"):
        idx.search([list(q.context)], mode="reg")


# ----------------------------------------------------------------------------------------------------------- score
def _two_exemplar_index(attrs_a, attrs_b):
    q = "query"
    vecs = {q: [1.0, 0.0], "a": [0.95, np.sqrt(1 - 0.95 ** 2)], "b": [0.9, np.sqrt(1 - 0.81)]}
    exs = [Exemplar("A#1", "resp a", ("a",), attributes=dict(attrs_a, emotion="sad", dialogue_id="A")),
           Exemplar("B#1", "resp b", ("b",), attributes=dict(attrs_b, emotion="sad", dialogue_id="B"))]
    vectors = np.asarray([vecs["a"], vecs["b"]], dtype=np.float32)
    return ExemplarIndex.from_vectors(exs, vectors, {"encoder": "dict", "score": {"weight": 0.2, "pool": 64}},
                                      encoder=DictEncoder(vecs))


LOW = dict(sentiment="low", presence="low", interpretation="low", exploration="low")
HIGH = dict(sentiment="high", presence="high", interpretation="high", exploration="high")


def test_agreement_changes_ranking_and_semantic_ignores_attributes():
    idx = _two_exemplar_index(LOW, HIGH)
    ids = lambda res: [e.id for e in res[0]]  # noqa: E731
    assert ids(idx.search([["query"]], k=2, mode="semantic")) == ["A#1", "B#1"]
    reg = idx.search([["query"]], k=2, mode="reg", query_attributes=[HIGH])
    assert ids([reg[0]]) == ["B#1", "A#1"]
    assert reg[0][0].score == pytest.approx(0.9 + 0.2 * 1.0, abs=1e-5) and reg[0][0].attributes["agreement"] == 1.0
    assert reg[0][1].score == pytest.approx(0.95, abs=1e-5) and reg[0][1].attributes["agreement"] == 0.0
    # weight 0 = semantic order; partial agreement (2 of 4) = 0.5; per-attribute weights
    assert ids(idx.search([["query"]], k=2, mode="reg", query_attributes=[HIGH], weight=0)) == ["A#1", "B#1"]
    half = dict(HIGH, sentiment="low", presence="low")
    assert idx.search([["query"]], k=2, mode="reg", query_attributes=[half])[0][0].attributes["agreement"] == 0.5
    only_sent = idx.search([["query"]], k=2, mode="reg", query_attributes=[half],
                           attribute_weights={"sentiment": 1.0})[0]
    assert [e.id for e in only_sent] == ["A#1", "B#1"] and only_sent[0].attributes["agreement"] == 1.0
    # semantic: the same result whatever the query attributes, score = cosine, no agreement, no classifier needed
    sem = [idx.search([["query"]], k=2, mode=m, query_attributes=[qa]) for qa in (HIGH, LOW)
           for m in ("semantic", "no-emotion-attributes")]
    assert all([e.to_json() for e in s[0]] == [e.to_json() for e in sem[0][0]] for s in sem)
    assert sem[0][0][0].score == pytest.approx(0.95, abs=1e-5) and sem[0][0][0].attributes["agreement"] is None
    # equal attributes: the attribute term cannot reorder
    same = _two_exemplar_index(HIGH, HIGH)
    assert [e.id for e in same.search([["query"]], k=2, mode="reg", query_attributes=[LOW])[0]] == ["A#1", "B#1"]
    with pytest.raises(ConfigError, match="unknown retrieval mode"):
        idx.search([["query"]], mode="bm25")


def test_pool_limits_reranking():
    idx = _two_exemplar_index(LOW, HIGH)
    assert [e.id for e in idx.search([["query"]], k=1, mode="reg", query_attributes=[HIGH], pool=1)[0]] == ["A#1"]


# ----------------------------------------------------------------------------------------------------- save / load
def test_save_load_identical_and_rebuild_skipped(built, corpus):
    idx, enc, folder = built
    cfg = json.loads((folder / "config.json").read_text())
    assert {cfg[k] for k in ("encoder", "attribute_source")} == {"hash", "context"}
    assert cfg["corpus_size"] == len(corpus) == len(idx) and cfg["seed"] == 0 and cfg["faiss"] == "IndexFlatIP"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "exemplars.jsonl", "index.faiss"]
    queries = [ctx(e) for e in corpus[:6]]
    own = [e.dialogue_id for e in corpus[:6]]
    tagger = fake_tagger()
    qa = tagger.tag_queries(queries)
    first = idx.search(queries, k=4, mode="reg", exclude_dialogue_ids=own, query_attributes=qa)
    loaded = ExemplarIndex.load(folder, encoder=HashEncoder(), tagger=tagger)
    again = loaded.search(queries, k=4, mode="reg", exclude_dialogue_ids=own)  # attributes computed by the tagger
    assert [[e.to_json() for e in r] for r in first] == [[e.to_json() for e in r] for r in again]
    assert all(e.attributes["dialogue_id"] != d for r, d in zip(again, own) for e in r)
    # same build config → loaded, nothing recomputed (a new score weight is a search default, no rebuild)
    calls, counting = enc.calls, fake_tagger()
    again_idx = build_index({"encoder": "hash", "score": {"weight": 0.5}}, folder, examples=corpus, encoder=enc,
                            tagger=counting, progress=False)
    assert enc.calls == calls and not counting.classifiers["presence"].seen and again_idx.config["score"]["weight"] == 0.5
    # another encoder → re-embedded, the saved attributes reused
    enc2 = HashEncoder()
    build_index({"encoder": "hash-2"}, folder, examples=corpus, encoder=enc2, tagger=counting, progress=False)
    assert enc2.calls > 0 and not counting.classifiers["presence"].seen


def test_missing_index_and_run_dir(tmp_path, built):
    with pytest.raises(ResourceMissing, match="--build-index"):
        ExemplarIndex.load(tmp_path / "nowhere")
    _, _, folder = built
    assert resolve_index_dir(run=tmp_path / "run") == tmp_path / "run" / "index"
    assert resolve_index_dir(run=folder) == folder
    with pytest.raises(ConfigError):
        resolve_index_dir()


# -------------------------------------------------------------------------------------------------------- analysis
def test_random_retriever_alignment_and_vote(built, corpus):
    idx, _, _ = built
    rnd = RandomRetriever(idx.exemplars, seed=1)
    queries = [ctx(e) for e in corpus[:5]]
    own = [e.dialogue_id for e in corpus[:5]]
    a = rnd.search(queries, k=3, exclude_dialogue_ids=own)
    assert [[e.id for e in r] for r in a] == [[e.id for e in r] for r in RandomRetriever(idx.exemplars, 1).search(
        queries, k=3, exclude_dialogue_ids=own)]
    assert [[e.id for e in r] for r in a] != [[e.id for e in r] for r in RandomRetriever(idx.exemplars, 2).search(
        queries, k=3, exclude_dialogue_ids=own)]
    assert all(e.attributes["dialogue_id"] != d for r, d in zip(a, own) for e in r)

    sad, joy, angry = ({"emotion": e} for e in ("sad", "joyful", "angry"))
    res = [[Exemplar("1", "", attributes=sad), Exemplar("2", "", attributes=angry)],
           [Exemplar("3", "", attributes=joy), Exemplar("4", "", attributes=sad)]]
    al = alignment(res, ["sad", "joyful"])
    assert al["emotion"] == 0.5 and al["polarity"] == 0.75 and al["exemplars"] == 4  # angry is negative too

    tab = alignment_table({"semantic": (idx, "semantic"), "random": (rnd, None)}, corpus[:8], k=3)
    assert set(tab) == {"semantic", "random"} and all(v["exemplars"] == 24 for v in tab.values())

    vote = [Exemplar("1", "", score=0.9, attributes=sad), Exemplar("2", "", score=0.5, attributes=joy),
            Exemplar("3", "", score=0.5, attributes=joy)]
    assert exemplar_emotion_vote(vote)[0] == "joyful"
    assert exemplar_emotion_vote(vote[:2]) == ("sad", pytest.approx(0.9 / 1.4, abs=1e-4))
    assert exemplar_emotion_vote([]) == (None, 0.0)


# ------------------------------------------------------------------------------------------------------------- CLI
def test_cli_prints_table_builds_and_reports_missing_classifier(built, tmp_path, monkeypatch):
    from empathkit.cli.main import app

    _, _, folder = built
    monkeypatch.setattr(reg_index, "load_encoder", lambda name: HashEncoder())
    runner = CliRunner()
    r = runner.invoke(app, ["retrieve", "My old cat passed away yesterday.", "--index", str(folder), "-k", "3",
                            "--mode", "semantic"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("|")]
    assert "exemplar" in lines[0] and "score" in lines[0] and len(lines) == 2 + 3  # header, rule, 3 rows
    assert "sad-" in r.stdout
    # reg mode needs the EPITOME classifiers for the query: fakes through load_classifier …
    fakes = fake_classifiers()
    kinds = {"epitome-er": "presence", "epitome-ip": "interpretation", "epitome-ex": "exploration"}
    monkeypatch.setattr(clf_pkg, "load_classifier", lambda kind, src=None, required=True: fakes[kinds[kind]])
    r = runner.invoke(app, ["retrieve", "My old cat passed away yesterday.", "--index", str(folder), "--json"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(ln) for ln in r.stdout.splitlines()]
    assert len(rows) == 5 and all(row["attributes"]["agreement"] is not None for row in rows)
    # … and a clear one-line error without them
    monkeypatch.setattr(clf_pkg, "load_classifier", lambda kind, src=None, required=True: None)
    r = runner.invoke(app, ["retrieve", "My old cat passed away yesterday.", "--index", str(folder)])
    assert r.exit_code == 2 and "empathkit classifiers train epitome-er" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    # --build-index from a JSONL source with key=value overrides
    write_jsonl(make_dialogues(), tmp_path / "d.jsonl")
    r = runner.invoke(app, ["retrieve", "--build-index", "--out", str(tmp_path / "new"),
                            f"data.source={tmp_path / 'd.jsonl'}", "attributes.source=none", "data.train_limit=10"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "new" / "config.json").read_text())["corpus_size"] == 10
    r = runner.invoke(app, ["retrieve", "--build-index", "--out", str(tmp_path / "x"), "score.nope=1"])
    assert r.exit_code == 2 and "score.nope" in r.output


# ------------------------------------------------------------------------------------------------------ real MiniLM
@requires_minilm
def test_minilm_index(tmp_path, corpus):
    idx = build_index({}, tmp_path / "m", examples=corpus, tagger=fake_tagger(), progress=False)
    assert idx.config["encoder"] == "minilm-l6" and idx.config["dim"] == 384
    q = [["My cat died last night, I miss her."]]
    sem = idx.search(q, k=3, mode="semantic")[0]
    assert sem[0].attributes["emotion"] == "sad" and -1.0 <= sem[-1].score <= sem[0].score <= 1.0 + 1e-5
    reg = idx.search(q, k=3, mode="reg")[0]
    assert all(e.attributes["agreement"] is not None for e in reg)
    loaded = ExemplarIndex.load(tmp_path / "m", tagger=fake_tagger())
    assert [e.to_json() for e in loaded.search(q, k=3, mode="reg")[0]] == [e.to_json() for e in reg]
