"""``method: reg`` (causal LMs): the run's index (train split only), G1's training prompt (attribute tags, no
exemplar), load with per-request retrieval (own conversation excluded for dataset examples), Reply.info, config
errors and the recipes. Written dialogues, tiny random Llama, the word-hashing fake encoder and keyword fake EPITOME
classifiers of test_reg_retrieval (the real MiniLM runs in the contract case)."""

from __future__ import annotations

import dataclasses

import pytest

import empathkit.methods.reg.attributes as reg_attributes
import empathkit.methods.reg.index as reg_index
from empathkit.api import load_generator, method_config
from empathkit.data.jsonl import write_jsonl
from empathkit.errors import ConfigError
from empathkit.methods import METHODS
from empathkit.methods.reg.config import REGModelConfig, retriever_config_cls
from empathkit.methods.reg.method import REGRunGenerator
from empathkit.methods.reg.train import g1_prompt
from empathkit.models.generation import GenerationSettings
from empathkit.testing import make_dialogues
from empathkit.types import Controls, Exemplar
from tests.methods.test_reg_retrieval import HashEncoder, fake_classifiers

SAMPLED = GenerationSettings(max_new_tokens=6, batch_size=4, do_sample=True, temperature=1.0, top_p=1.0, seed=3)
TRAIN = {"max_steps": 1, "batch_size": 4, "lr": 5e-3, "max_length": 96, "warmup_ratio": 0.0,
         "early_stopping_patience": None, "save_every": 100, "stages": ["g1"]}
MODEL = {"backbone": "tiny-random-llama", "lora_r": 4, "k": 3, "retrieval": {"encoder": "hash"}}


def _held_out(split: str):
    return [dataclasses.replace(d, id=f"{split}-{d.id}", split=split) for d in make_dialogues()[:4]]


@pytest.fixture(scope="module")
def patched():
    mp = pytest.MonkeyPatch()
    enc = HashEncoder()
    mp.setattr(reg_index, "load_encoder", lambda name: enc)
    mp.setattr(reg_attributes, "load_epitome_classifiers", lambda sources=None: fake_classifiers())
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def data(tmp_path_factory, patched):
    d = tmp_path_factory.mktemp("reg-method")
    write_jsonl(make_dialogues() + _held_out("valid") + _held_out("test"), d / "all.jsonl")
    return d


def _cfg(data, model=None, train=None):
    return {"method": "reg", "seed": 0, "model": MODEL | (model or {}), "train": TRAIN | (train or {}),
            "data": {"source": str(data / "all.jsonl"), "protocol": "every-listener"}}


@pytest.fixture(scope="module")
def run(data, patched):
    import empathkit.models.encoding as encoding

    seen = []
    real = encoding.encode_examples

    def spy(tok, examples, sp, *a, **kw):
        seen.extend((ex, sp(ex)) for ex in examples)
        return real(tok, examples, sp, *a, **kw)

    patched.setattr(encoding, "encode_examples", spy)
    rd = METHODS.get("reg").train(_cfg(data), data / "run", progress=False)
    patched.setattr(encoding, "encode_examples", real)
    return rd, seen


def test_index_holds_train_dialogues_only(run):
    rd, _ = run
    idx = reg_index.ExemplarIndex.load(rd / "index")
    ids = {e.attributes["dialogue_id"] for e in idx.exemplars}
    assert ids == {d.id for d in make_dialogues()}
    assert idx.has_attributes and (rd / "adapter" / "adapter_config.json").is_file() and (rd / "done").is_file()


def test_g1_training_prompt_has_attribute_tags_and_no_exemplar(run):
    _, seen = run
    assert seen
    tagger = reg_attributes.AttributeTagger(fake_classifiers())
    for ex, prompt in seen:
        assert "# Emotion attributes of the user's message" in prompt and "[sentiment=" in prompt
        assert "Exemplar" not in prompt and "Replies from similar" not in prompt
        want = tagger.tag_queries([[t.text for t in ex.context]])[0]  # the context only: no gold-response leak
        assert f"[presence={want['presence']}]" in prompt and f"[sentiment={want['sentiment']}]" in prompt
        assert ex.target not in prompt


def test_predictions_carry_exemplars_never_from_own_or_held_out_conversations(run):
    from empathkit.data import load_examples

    rd, _ = run
    gen = load_generator(run_dir=rd)
    assert isinstance(gen, REGRunGenerator) and gen.name == "reg"
    train_ids = {d.id for d in make_dialogues()}
    for split in ("train", "test"):
        exs = load_examples(str(rd.parent / "all.jsonl"), split, "every-listener")[:8]
        preds = gen.generate(exs, SAMPLED, progress=False)
        for ex, p in zip(exs, preds):
            got = p.extra["exemplars"]
            assert len(got) == 3 and len(p.extra["exemplar_scores"]) == 3
            assert all(i.split("#")[0] != ex.dialogue_id for i in got)  # never its own conversation
            assert all(i.split("#")[0] in train_ids for i in got)  # never a valid / test dialogue
            assert p.extra["predicted_emotion"] and set(p.extra["attributes"]) >= {"sentiment", "presence"}


def test_chat_retrieves_per_request(run):
    rd, _ = run
    gen = load_generator(run_dir=rd)
    conv = [{"role": "user", "content": "My old cat passed away yesterday."}]
    r = gen.chat([conv], SAMPLED)[0]
    assert len(r.info["exemplars"]) == 3 and r.info["exemplars"][0].startswith("sad-")  # itself is not excluded
    assert r.info["predicted_emotion"] == "sad" and r.info["attributes"]["sentiment"] in ("low", "mid", "high")
    mine = (Exemplar("mine", "Here for you.", ("Hi",)),)
    forced = gen.chat([conv], SAMPLED, [Controls(exemplars=mine, attributes={"sentiment": "high"})])[0]
    assert forced.info["exemplars"] == ["mine"] and forced.info["attributes"] == {"sentiment": "high"}
    semantic = load_generator(run_dir=rd, model_config={"mode": "semantic", "k": 2})
    s = semantic.chat([conv], SAMPLED)[0]
    assert len(s.info["exemplars"]) == 2 and s.info["exemplar_scores"][0] <= r.info["exemplar_scores"][0]
    prompt = gen.prompt(conv, gen.resolve_controls([conv], [Controls()])[0], SAMPLED)
    assert "Replies from similar conversations" in prompt and "[sentiment=" in prompt


def test_g1_prompt_is_the_generators_prompt_without_exemplars():
    from empathkit.data.protocols import to_examples

    ex = to_examples(make_dialogues(), "every-listener")[0]
    ex = dataclasses.replace(ex, annotations=dataclasses.replace(ex.annotations, attributes={"sentiment": "low"}))
    mc = REGModelConfig(system_prompt="Be kind.")
    assert g1_prompt(mc)(ex) == "Be kind.\n\n# Emotion attributes of the user's message\n[sentiment=low]"
    off = REGModelConfig(mode="semantic", attribute_tags=False, system_prompt="Be kind.")
    assert g1_prompt(off)(ex) == "Be kind."


def test_config_errors(data):
    with pytest.raises(ConfigError, match="g2 and joint both"):
        method_config(_cfg(data, train={"stages": ["g1", "g2", "joint"]}))
    with pytest.raises(ConfigError, match="g2: inti: Extra inputs"):
        method_config(_cfg(data, train={"stages": ["g1", "joint"], "g2": {"inti": "base"}}))
    with pytest.raises(ConfigError, match="unknown REG ablation 'w/o-xyz'"):
        method_config(_cfg(data, train={"ablations": ["w/o-xyz"]}))
    with pytest.raises(ConfigError, match="mode=semantic"):
        method_config(_cfg(data, {"retrieval": {"attributes": {"source": "none"}}}))
    assert method_config(_cfg(data, {"mode": "no-emotion-attributes", "attribute_tags": False})).model.mode == "semantic"
    if retriever_config_cls() is None:
        with pytest.raises(ConfigError, match="reg.retriever"):
            METHODS.get("reg").train(_cfg(data, train={"stages": ["g1", "retriever"]}), data / "r", progress=False)


def test_recipes_validate():
    from empathkit.config import REPO_RECIPES, load_config

    for name in ("cpu-small", "paper-llama3.1-8b"):
        cfg = load_config(REPO_RECIPES / "reg" / f"{name}.yaml")
        mc = method_config(cfg)
        assert mc.model.k >= 1 and mc.train.stages[0] == "g1", name


def test_training_query_attributes_use_the_context_rule_whatever_the_index_source():
    from empathkit.data.protocols import to_examples
    from empathkit.methods.reg.train import query_attributes

    exs = to_examples(make_dialogues(), "every-listener")[:5]
    resp = reg_attributes.AttributeTagger(fake_classifiers(), source="response")
    ctx = reg_attributes.AttributeTagger(fake_classifiers(), source="context")
    assert query_attributes(exs, resp, progress=False) == ctx.tag_queries([[t.text for t in e.context] for e in exs])


def test_retriever_stage_and_trained_query_encoder_are_wired(data, patched, monkeypatch):
    """Stage 2 with a stand-in for reg/retriever.py (its real tests live with it): train_reg hands it the index,
    G1 as a plain REGCausalGenerator and the attributed training queries; load uses the saved query encoder."""
    import sys
    import types

    from pydantic import BaseModel

    from empathkit.methods.reg.generator import REGCausalGenerator

    calls = {}

    class RetrieverTrainConfig(BaseModel):
        model_config = {"extra": "forbid"}
        queries: int = 2

    class QueryEncoder(HashEncoder):
        @classmethod
        def load(cls, d):
            calls["loaded"] = d
            return cls()

    def train_retriever(index, g1, queries, cfg, out_dir, progress, mode=None):
        calls.update(index=index, g1=g1, queries=queries, cfg=cfg, mode=mode)
        (out_dir / "query_encoder").mkdir(parents=True)
        return out_dir

    from empathkit.methods.reg.retriever import stage_index

    fake = types.ModuleType("empathkit.methods.reg.retriever")
    fake.RetrieverTrainConfig, fake.QueryEncoder, fake.train_retriever = RetrieverTrainConfig, QueryEncoder, train_retriever
    fake.stage_index = stage_index  # the real one: no refreshed index here, so the built one
    monkeypatch.setitem(sys.modules, "empathkit.methods.reg.retriever", fake)
    with pytest.raises(ConfigError, match="retriever: querys: Extra inputs"):
        method_config(_cfg(data, train={"stages": ["g1", "retriever"], "retriever": {"querys": 2}}))
    rd = METHODS.get("reg").train(_cfg(data, train={"stages": ["g1", "retriever"], "retriever": {"queries": 3}}),
                                  data / "with-retriever", progress=False)
    assert calls["cfg"].queries == 3 and len(calls["index"]) > 0 and calls["mode"] == "reg"  # the run's mode
    assert type(calls["g1"]) is REGCausalGenerator  # no retrieval of its own
    assert calls["queries"] and all(q.annotations.attributes.get("sentiment") for q in calls["queries"])
    gen = load_generator(run_dir=rd)
    assert calls["loaded"] == rd / "retriever" / "query_encoder" and gen.info["query_encoder"] == "trained"
    assert isinstance(gen.index.encoder, QueryEncoder)
    assert len(gen.chat([[{"role": "user", "content": "My car got scratched."}]], SAMPLED)[0].info["exemplars"]) == 3
