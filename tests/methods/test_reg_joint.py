"""REG stage 3 (empathkit/methods/reg/joint.py): G2 from G1 with the current retriever's exemplars in its prompt,
Eq. 7's joint loss, the joint query encoder saved and used at load. Written dialogues, the tiny random Llama, the real
MiniLM (skipped when absent), an index without attributes (semantic mode, no EPITOME classifiers). One torch thread."""

from __future__ import annotations

import types

import pytest
import torch

from empathkit.api import load_generator
from empathkit.data.jsonl import write_jsonl
from empathkit.methods import METHODS
from empathkit.methods.reg import joint as reg_joint
from empathkit.methods.reg.distill import CandidateAugmenter
from empathkit.models.generation import GenerationSettings
from empathkit.testing import make_dialogues
from empathkit.training.trainer import CausalLMTrainer
from tests.conftest import requires_minilm

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")

MODEL = {"backbone": "tiny-random-llama", "lora_r": 4, "k": 2, "mode": "semantic", "attribute_tags": False,
         "retrieval": {"encoder": "minilm-l6", "attributes": {"source": "none"}}}
TRAIN = {"max_steps": 2, "batch_size": 4, "lr": 5e-3, "max_length": 96, "warmup_ratio": 0.0,
         "early_stopping_patience": None, "save_every": 100, "stages": ["g1", "retriever", "joint"],
         "retriever": {"pool": 3, "queries": 8, "batch_size": 4, "lr": 1e-3, "max_new_tokens": 4,
                       "decode_batch_size": 12, "distill": {"k": 0.3}},
         "g2": {"max_steps": 3, "max_length": 192, "retriever_lr": 1e-2}}


def _cfg(data, train=None):
    return {"method": "reg", "seed": 0, "model": MODEL, "train": TRAIN | (train or {}),
            "data": {"source": str(data / "all.jsonl"), "protocol": "every-listener"}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import empathkit.models.encoding as encoding

    d = tmp_path_factory.mktemp("reg-joint")
    write_jsonl(make_dialogues(), d / "all.jsonl")
    seen = []
    real = encoding.encode_examples

    def spy(tok, examples, sp, *a, **kw):
        seen.append([(ex, sp(ex)) for ex in examples])
        return real(tok, examples, sp, *a, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(encoding, "encode_examples", spy)
    try:
        rd = METHODS.get("reg").train(_cfg(d), d / "run", progress=False)
    finally:
        mp.undo()
    return rd, seen


@requires_minilm
def test_joint_stage_trains_g2_and_the_query_encoder(run):
    from safetensors.torch import load_file

    rd, seen = run
    assert (rd / "g2" / "done").is_file() and (rd / "g2" / "adapter" / "query_encoder").is_dir()
    g1 = load_file(str(rd / "adapter" / "adapter_model.safetensors"))
    g2 = load_file(str(rd / "g2" / "adapter" / "adapter_model.safetensors"))
    assert g1.keys() == g2.keys() and any(not torch.equal(g1[k], g2[k]) for k in g1)  # G2 moved on from G1
    s2 = load_file(str(rd / "retriever" / "query_encoder" / "model.safetensors"))
    s3 = load_file(str(rd / "g2" / "adapter" / "query_encoder" / "model.safetensors"))
    assert any(not torch.equal(s2[k], s3[k]) for k in s2)  # the joint loss moved the query encoder
    import json

    rows = [json.loads(x) for x in (rd / "g2" / "log.jsonl").read_text().splitlines()]
    joint = [r for r in rows if r.get("kind") == "joint"]
    assert joint and all(r["alpha"] == 0.2 and r["loss_r"] >= 0 and r["loss_g2"] > 0 for r in joint)
    # G1's rows have no exemplar; G2's rows carry K exemplars, never from the example's own conversation
    g1_rows, g2_rows = seen[0], seen[-1]
    assert all("Exemplar" not in (sp or "") for _, sp in g1_rows)
    assert all((sp or "").count("\nExemplar ") == 2 for _, sp in g2_rows)
    gen = load_generator(run_dir=rd)
    assert gen.info["generator"] == "g2" and gen.info["query_encoder"] == "trained"
    exs = [ex for ex, _ in g2_rows[:4]]
    preds = gen.generate(exs, GenerationSettings(max_new_tokens=4, batch_size=4), progress=False)
    for ex, p in zip(exs, preds):
        assert len(p.extra["exemplars"]) == 2
        assert all(not e.startswith(ex.dialogue_id + "#") for e in p.extra["exemplars"])


@requires_minilm
def test_g2_starts_from_g1_and_scratch_from_the_base(run):
    """The prepare hook loads G1's adapter into G2's fresh LoRA; train.g2.init=base gives no hook."""
    from safetensors.torch import load_file

    from empathkit.methods.reg.config import REGModelConfig
    from empathkit.training.backbone import build_lora_model, load_base

    rd, _ = run
    mc = REGModelConfig(**MODEL)
    fresh = build_lora_model(load_base(mc)[0], mc)
    model, _ = reg_joint._g1_loader(rd)(fresh, None, mc, None)
    g1 = load_file(str(rd / "adapter" / "adapter_model.safetensors"))
    state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    assert len(state) == len(g1)
    for k, v in g1.items():
        match = [s for s in state if s.replace(".default", "") == k]
        assert match and torch.equal(state[match[0]], v), k


def test_joint_loss_is_eq7_and_eval_is_g2_alone(monkeypatch):
    monkeypatch.setattr(CausalLMTrainer, "compute_loss",
                        lambda self, model, inputs, return_outputs=False, num_items_in_batch=None: torch.tensor(2.0))
    dist = types.SimpleNamespace(queries=[0, 1, 2], loss=lambda q, ids, c: (torch.tensor(5.0), None, None))
    t = object.__new__(reg_joint.REGJointTrainer)
    t.joint = reg_joint.JointParts(torch.nn.Linear(1, 1), dist, [[]] * 3, 0.2, 1e-3, 2, 0)
    t.joint.qenc.encode = None
    t.sink = None
    model = types.SimpleNamespace(training=True)
    assert float(t.compute_loss(model, {})) == pytest.approx(0.8 * 2.0 + 0.2 * 5.0)
    model.training = False
    assert float(t.compute_loss(model, {})) == 2.0
    seen = [t.joint.next_ids() for _ in range(3)]  # a seeded cycle over the queries: each once per pass
    assert all(len(s) == 2 for s in seen) and sorted(seen[0] + seen[1][:1]) == [0, 1, 2]


def test_prompt_exemplars_exclude_own_conversation_and_augment_at_rate_k():
    from empathkit.data.protocols import to_examples
    from empathkit.methods.reg.config import REGModelConfig
    from empathkit.methods.reg.corpus import corpus_examples
    from empathkit.methods.reg.index import build_index
    from tests.methods.test_reg_retrieval import HashEncoder

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        idx = build_index({"attributes": {"source": "none"}}, Path(tmp), examples=corpus_examples(make_dialogues()),
                          encoder=HashEncoder(), progress=False)
    exs = to_examples(make_dialogues(), "every-listener")[:10]
    mc = REGModelConfig(k=2, mode="semantic", attribute_tags=False)
    rows, rep, tot = reg_joint.prompt_exemplars(idx, exs, mc, HashEncoder(), None)
    assert rep == 0 and tot == 20
    assert all(not e.id.startswith(ex.dialogue_id + "#") for ex in exs for e in rows[ex.id])
    all_rep = reg_joint.prompt_exemplars(idx, exs, mc, HashEncoder(), CandidateAugmenter(idx.exemplars, 1.0, 0))
    assert all_rep[1] == all_rep[2] == 20
    assert all(not e.id.startswith(ex.dialogue_id + "#") for ex in exs for e in all_rep[0][ex.id])
    prompt = reg_joint.g2_prompt(mc, rows)(exs[0])
    assert prompt.count("\nExemplar ") == 2 and rows[exs[0].id][0].response.split()[0] in prompt


def test_decode_cache_keys_only_on_settings_that_change_the_text(tmp_path):
    """Stage 2 and the joint stage share G1's decode cache (reg/decodes.py): batch size and the prefix cache do not
    change a greedy decode, so changing them reuses the decodes; max_new_tokens / precision do; when sampling, the
    batch decides the draws. A file written under the older every-field key is found and reused."""
    import json

    from empathkit.methods.reg.decodes import DecodeCache

    greedy = GenerationSettings(max_new_tokens=4, batch_size=12)
    cache = DecodeCache.open(tmp_path, "runs/g1", greedy.model_dump(mode="json"), mode="semantic", pool=3)
    cache.add([("q1", "e1", "hello there")])

    def reopen(**change):
        return DecodeCache.open(tmp_path, "runs/g1", greedy.model_copy(update=change).model_dump(mode="json"),
                                mode="semantic", pool=3)

    same = reopen(batch_size=64, prefix_cache=False, temperature=0.3, seed=5)
    assert same.path == cache.path and same.get("q1", "e1") == "hello there"
    for change in ({"max_new_tokens": 8}, {"precision": "bfloat16"}, {"num_beams": 2}):
        other = reopen(**change)
        assert other.path != cache.path and len(other) == 0, change
    sampled = reopen(do_sample=True)
    assert sampled.path != cache.path and reopen(do_sample=True, batch_size=2).path != sampled.path

    old = tmp_path / "old"  # the previous key: every settings field, before no_repeat_ngram_size existed
    old.mkdir()
    settings = GenerationSettings(max_new_tokens=6, batch_size=16).model_dump(mode="json")
    del settings["no_repeat_ngram_size"]
    key = {"version": 1, "g1": "runs/g1", "settings": settings, "mode": "reg", "pool": 3}
    (old / "g1-decodes-0123456789abcdef.jsonl").write_text(
        json.dumps({"cache_key": key}) + "\n" + json.dumps({"query": "q", "exemplar": "", "text": "t"}) + "\n")
    found = DecodeCache.open(old, "runs/g1", GenerationSettings(max_new_tokens=6, batch_size=64).model_dump(),
                             mode="reg", pool=3)
    assert found.path.name == "g1-decodes-0123456789abcdef.jsonl" and found.get("q", "") == "t"
    assert len(DecodeCache.open(old, "runs/g1", GenerationSettings(max_new_tokens=7).model_dump(), mode="reg",
                                pool=3)) == 0
