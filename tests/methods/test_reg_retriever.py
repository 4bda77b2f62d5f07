"""REG stage 2 (empathkit/methods/reg/retriever.py): the query encoder and the distillation loop, on written fixtures
(`make_dialogues`), the real MiniLM (skipped when not installed), an index without attributes and G1 = the tiny
random Llama (or an echo generator where a non-uniform target is needed). One torch thread."""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest
import torch

from empathkit.data.protocols import to_examples
from empathkit.methods.reg.corpus import corpus_examples
from empathkit.methods.reg.distill import RetrieverDistillLoss, similarity_scores
from empathkit.methods.reg.index import ExemplarIndex, build_index, embed, load_encoder
from empathkit.methods.reg.retriever import QueryEncoder, RetrieverTrainConfig, train_retriever
from empathkit.testing import make_dialogues
from tests.conftest import requires_minilm

pytestmark = [requires_minilm, pytest.mark.usefixtures("one_torch_thread")]


class Counting:
    """Wraps a Generator; counts the rows it decodes."""

    def __init__(self, gen):
        self.gen, self.rows = gen, 0

    def generate(self, examples, settings=None, controls=None, progress=True):
        self.rows += len(examples)
        return self.gen.generate(examples, settings, controls, progress)


class Echo:
    """G1 that answers with its exemplar's response: F then ranks candidates by their overlap with the gold."""

    def generate(self, examples, settings=None, controls=None, progress=True):
        return [types.SimpleNamespace(prediction=c.exemplars[0].response if c.exemplars else "") for c in controls]


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg-retriever") / "idx"
    return build_index({"attributes": {"source": "none"}}, d, examples=corpus_examples(make_dialogues()),
                       progress=False), d


@pytest.fixture(scope="module")
def queries():
    return to_examples(make_dialogues(), "every-listener")


@pytest.fixture(scope="module")
def g1():
    from empathkit.methods.reg.generator import REGCausalGenerator, REGPromptConfig
    from empathkit.models.backbones import tiny_random_llama

    model, tok = tiny_random_llama()
    return REGCausalGenerator(model, tok, REGPromptConfig(max_exemplars=1))


CFG = dict(pool=4, epochs=2, batch_size=8, lr=1e-3, max_new_tokens=6, distill={"k": 0.3})


def test_untrained_query_encoder_embeds_as_the_index(index, queries):
    idx, _ = index
    q = QueryEncoder.from_encoder("minilm-l6")
    ctx = [[t.text for t in ex.context] for ex in queries[:5]]
    ref = embed(load_encoder("minilm-l6"), [" ".join(c) for c in ctx])
    assert np.allclose(q.encode(ctx, convert_to_numpy=True), ref, atol=1e-5)
    assert [[e.id for e in r] for r in idx.search(ctx, k=3, mode="semantic", query_encoder=q)] == \
           [[e.id for e in r] for r in idx.search(ctx, k=3, mode="semantic")]
    q.train()
    assert q.encode(ctx).requires_grad  # differentiable in training mode


def test_loss_decreases_and_save_load_retrieves_identically(index, queries, tmp_path):
    idx, d = index
    torch.manual_seed(0)
    q = QueryEncoder.from_encoder("minilm-l6")
    vec = torch.from_numpy(idx.vectors())
    ctx = [[t.text for t in ex.context] for ex in queries[:4]]
    cand = torch.stack([torch.randperm(len(idx))[:5] for _ in ctx])
    F = torch.rand(len(ctx), 5)  # a fixed, non-uniform utility matrix
    loss_fn = RetrieverDistillLoss("kl-fid", tau=0.1, tau_r=0.1)
    opt = torch.optim.AdamW(q.parameters(), lr=1e-3)
    q.train()
    losses = []
    for _ in range(6):
        loss = loss_fn(F, similarity_scores(q.encode(ctx), vec[cand]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    q.eval()
    q.save(tmp_path / "qe")
    assert (tmp_path / "qe" / "model.safetensors").is_file() and not list((tmp_path / "qe").rglob("*.bin"))
    loaded = QueryEncoder.load(tmp_path / "qe")
    assert np.allclose(loaded.encode(ctx, convert_to_numpy=True), q.encode(ctx, convert_to_numpy=True), atol=1e-5)
    fresh = ExemplarIndex.load(d, query_encoder=loaded)
    as_ids = lambda rows: [[(e.id, round(e.score, 5)) for e in r] for r in rows]  # noqa: E731
    assert as_ids(fresh.search(ctx, k=4, mode="semantic")) == as_ids(idx.search(ctx, k=4, mode="semantic",
                                                                                 query_encoder=q))


def test_train_retriever(index, queries, g1, tmp_path):
    idx, _ = index
    before = idx.vectors().copy()
    base = {k: v.clone() for k, v in load_encoder("minilm-l6").state_dict().items()}
    gen = Counting(g1)
    cfg = RetrieverTrainConfig(**CFG)
    out = train_retriever(idx, gen, queries, cfg, tmp_path / "r", progress=False)
    summary = json.loads((out / "retriever_config.json").read_text())
    log = [json.loads(line) for line in (out / "retriever_log.jsonl").read_text().splitlines()]
    # only the query encoder changed: exemplar vectors and the index's own encoder are untouched
    assert np.array_equal(idx.vectors(), before)
    assert all(torch.equal(v, base[k]) for k, v in load_encoder("minilm-l6").state_dict().items())
    trained = QueryEncoder.load(out / "query_encoder").model.state_dict()
    assert any(not torch.equal(trained[k], base[k]) for k in base)
    # log and summary
    assert len(log) == summary["steps"] == 2 * -(-len(queries) // 8)
    assert all({"loss", "entropy", "augmented"} <= set(r) for r in log)
    assert summary["mode"] == "semantic" and summary["config"] == cfg.model_dump(mode="json")
    assert 0 < summary["augmented_share"] < 1 and any(r["augmented"] > 0 for r in log)  # Eq. 5 applied
    assert summary["decoded"] == gen.rows > 0 and set(summary["seconds"]) >= {"decoding", "training"}
    # no candidate (retrieved or augmented) from the query's own conversation
    dlg = {q.id: q.dialogue_id for q in queries}
    (cache_file,) = (out / "decodes").glob("*.jsonl")
    pairs = [json.loads(line) for line in cache_file.read_text().splitlines()[1:]]
    assert len(pairs) == gen.rows
    assert all(p["exemplar"].split("#")[0] != dlg[p["query"]] for p in pairs)
    # a finished run with the same config returns at once
    stamp = (out / "retriever_config.json").stat().st_mtime_ns
    train_retriever(idx, gen, queries, cfg, out, progress=False)
    assert gen.rows == summary["decoded"] and (out / "retriever_config.json").stat().st_mtime_ns == stamp
    # an interrupted / redone run reuses every cached decode (same seed: the same candidates)
    shutil.rmtree(out / "query_encoder")
    train_retriever(idx, gen, queries, cfg, out, progress=False)
    again = json.loads((out / "retriever_config.json").read_text())
    assert gen.rows == summary["decoded"] and again["decoded"] == 0 and again["cached"] == summary["cached"]


def test_echo_g1_gives_a_non_uniform_target(index, queries, tmp_path):
    idx, _ = index
    cfg = RetrieverTrainConfig(**dict(CFG, epochs=1, distill={"k": 0.0}))
    out = train_retriever(idx, Echo(), queries[:8], cfg, tmp_path / "e", progress=False)
    log = [json.loads(line) for line in (out / "retriever_log.jsonl").read_text().splitlines()]
    assert log and log[0]["entropy"] < np.log(4) - 1e-3 and log[0]["augmented"] == 0.0


def test_reindex_every_refreshes_vectors_and_pools_and_the_run_retrieves_from_the_refreshed_index(index, queries,
                                                                                                  tmp_path):
    from empathkit.methods.reg.method import run_index
    from empathkit.methods.reg.retriever import candidate_pools

    idx, folder = index
    before = idx.vectors().copy()
    cfg = RetrieverTrainConfig(**dict(CFG, lr=5e-2, distill={"k": 0.0}, reindex_every=2))
    rd = tmp_path / "run"
    shutil.copytree(folder, rd / "index")
    out = train_retriever(idx, Echo(), queries, cfg, rd / "retriever", progress=False)
    summary = json.loads((out / "retriever_config.json").read_text())
    rows = [json.loads(line) for line in (out / "retriever_log.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "step" in r]
    n = len(steps)
    assert n == summary["steps"] == 2 * -(-len(queries) // 8)
    refresh = [r for r in rows if r.get("kind") == "reindex"]
    assert [r["after_step"] for r in refresh] == list(range(2, n, 2)) and summary["refreshes"] == len(refresh)
    assert np.array_equal(idx.vectors(), before)  # the built index is untouched
    # the saved refreshed index = the corpus embedded by the final query encoder
    qenc = QueryEncoder.load(out / "query_encoder")
    saved = ExemplarIndex.load(out / "index")
    ref = embed(qenc, [" ".join(e.context) for e in saved.exemplars])
    assert np.allclose(saved.vectors(), ref, atol=1e-5) and not np.allclose(saved.vectors(), before, atol=1e-3)
    assert saved.config["refreshed"]["final"] is True and saved.config["key"]["encoder"] == "refreshed"
    # the pools moved with the refreshes: pairs beyond the initial pools were decoded (k = 0: no augmentation)
    _, pools0, _ = candidate_pools(idx, queries, QueryEncoder.from_encoder("minilm-l6"), cfg.pool)
    (cache_file,) = (out / "decodes").glob("*.jsonl")
    pairs = [(r["query"], r["exemplar"]) for r in map(json.loads, cache_file.read_text().splitlines()[1:])]
    initial = {(q.id, e) for q, p in zip(queries, pools0) for e in p}
    assert len(pairs) == len(set(pairs)) and initial <= set(pairs)
    assert sum(r["pool_changed"] for r in refresh) > 0 and len(pairs) > len(initial)
    # a trained run retrieves from the refreshed index with its trained encoder
    got = run_index(rd)
    assert got.config.get("refreshed") and np.allclose(got.vectors(), saved.vectors())
    ctx = [[t.text for t in ex.context] for ex in queries[:4]]
    assert [[e.id for e in r] for r in got.search(ctx, k=3, mode="semantic")] == \
           [[e.id for e in r] for r in saved.search(ctx, k=3, mode="semantic", query_encoder=qenc)]
    # a later run without re-indexing removes the stale refreshed index
    train_retriever(idx, Echo(), queries, RetrieverTrainConfig(**dict(CFG, epochs=1)), rd / "retriever",
                    progress=False)
    assert not (rd / "retriever" / "index").exists()
    assert not run_index(rd).config.get("refreshed")
