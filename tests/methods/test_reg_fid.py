"""REG for encoder–decoder backbones (empathkit/methods/reg/fid_train.py): FiD G1 → retriever → joint G2 on the tiny
random T5 and the written dialogues (real MiniLM, skipped when absent; index without attributes). One torch thread."""

from __future__ import annotations

import json

import pytest
import torch

from empathkit.api import load_generator
from empathkit.data.jsonl import write_jsonl
from empathkit.methods import METHODS
from empathkit.models.generation import GenerationSettings
from empathkit.testing import make_dialogues
from tests.conftest import requires_minilm

pytestmark = [requires_minilm, pytest.mark.usefixtures("one_torch_thread_module")]

MODEL = {"backbone": "tiny-random-t5", "finetune": "full", "k": 2, "mode": "semantic", "attribute_tags": False,
         "retrieval": {"encoder": "minilm-l6", "attributes": {"source": "none"}}}
TRAIN = {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "warmup_ratio": 0.0, "early_stopping_patience": None,
         "save_every": 100, "stages": ["g1", "retriever", "joint"],
         "retriever": {"pool": 2, "queries": 6, "batch_size": 4, "lr": 1e-3, "max_new_tokens": 4,
                       "decode_batch_size": 12, "distill": {"k": 0.3}},
         "g2": {"max_steps": 2, "retriever_lr": 1e-2}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("reg-fid")
    write_jsonl(make_dialogues(), d / "all.jsonl")
    cfg = {"method": "reg", "seed": 0, "model": MODEL, "train": TRAIN,
           "data": {"source": str(d / "all.jsonl"), "protocol": "every-listener"}}
    return METHODS.get("reg").train(cfg, d / "run", progress=False), cfg


def test_fid_stages_train_g1_g2_and_the_query_encoder(run):
    from safetensors.torch import load_file

    rd, _ = run
    for f in ("model/config.json", "retriever/query_encoder", "g2/done", "g2/model/query_encoder"):
        assert (rd / f).exists(), f
    g1 = load_file(str(rd / "model" / "model.safetensors"))
    g2 = load_file(str(rd / "g2" / "model" / "model.safetensors"))
    assert g1.keys() == g2.keys() and any(not torch.equal(g1[k], g2[k]) for k in g1)
    s2 = load_file(str(rd / "retriever" / "query_encoder" / "model.safetensors"))
    s3 = load_file(str(rd / "g2" / "model" / "query_encoder" / "model.safetensors"))
    assert any(not torch.equal(s2[k], s3[k]) for k in s2)
    rows = [json.loads(x) for x in (rd / "g2" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "joint" for r in rows)
    summary = json.loads((rd / "g2" / "train_summary.json").read_text())
    assert summary["fusion"] == "fid" and summary["init"] == "g1" and summary["prompt_exemplars"] > 0


def test_fid_run_loads_retrieves_per_request_and_round_trips(run, tmp_path):
    from empathkit.data.protocols import to_examples

    rd, _ = run
    gen = load_generator(run_dir=rd)
    assert type(gen).__name__ == "REGFiDRunGenerator" and gen.info["generator"] == "g2"
    assert gen.info["query_encoder"] == "trained"
    exs = to_examples(make_dialogues(), "every-listener")[:4]
    s = GenerationSettings(max_new_tokens=5, batch_size=4)
    preds = gen.generate(exs, s, progress=False)
    for ex, p in zip(exs, preds):
        assert len(p.extra["exemplars"]) == 2 and all(not e.startswith(ex.dialogue_id + "#") for e in p.extra["exemplars"])
    reply = gen.chat([[{"role": "user", "content": "My dog died last week."}]], s)[0]
    assert len(reply.info["exemplars"]) == 2
    scores = gen.score(exs)
    assert all(sc.tokens > 0 for sc in scores)
    back = load_generator(run_dir=gen.save(tmp_path / "copy"))
    assert [p.prediction for p in back.generate(exs, s, progress=False)] == [p.prediction for p in preds]
    assert [p.extra["exemplars"] for p in back.generate(exs, s, progress=False)] == [p.extra["exemplars"] for p in preds]


def test_fid_g1_rows_have_no_exemplar_and_g2_rows_one_passage_per_exemplar():
    from empathkit.data.protocols import to_examples
    from empathkit.methods.reg.config import REGModelConfig
    from empathkit.methods.reg.fid_train import fid_generator, fid_rows
    from empathkit.models.backbones import load_tokenizer
    from empathkit.types import Exemplar

    mc = REGModelConfig(**{**MODEL, "attribute_tags": True, "mode": "reg", "retrieval": {}})
    gen = fid_generator(None, load_tokenizer("tiny-random-t5"), mc)
    ex = to_examples(make_dialogues(), "every-listener")[0]
    import dataclasses

    ex = dataclasses.replace(ex, annotations=dataclasses.replace(ex.annotations, attributes={"sentiment": "low"}))
    g1 = fid_rows(gen, [ex], None, 256)[0]
    assert len(g1["passages"]) == 1 and "Exemplar" not in g1["passages"][0]
    assert g1["passages"][0].startswith("[sentiment=low]\n") and g1["target"] == ex.target
    assert ex.emotion not in g1["passages"][0].split("Assistant:")[0].split("\n", 1)[0]  # no gold emotion
    exs = (Exemplar(id="a#1", response="So sorry."), Exemplar(id="b#1", response="That is hard."))
    g2 = fid_rows(gen, [ex], {ex.id: exs}, 256)[0]
    assert len(g2["passages"]) == 2 and "So sorry." in g2["passages"][0] and "That is hard." in g2["passages"][1]


def test_seq2seq_lora_targets_map_the_causal_default_to_t5_names():
    from empathkit.errors import ConfigError
    from empathkit.methods.reg.fid_train import seq2seq_lora_targets
    from empathkit.models.backbones import load_backbone

    model, _ = load_backbone("tiny-random-t5")
    assert seq2seq_lora_targets(model, ["q_proj", "k_proj", "v_proj", "o_proj"]) == ["q", "k", "v", "o"]
    assert seq2seq_lora_targets(model, ["q", "v"]) == ["q", "v"]
    with pytest.raises(ConfigError, match="no such modules"):
        seq2seq_lora_targets(model, ["nope_proj"])


def test_fid_lora_g1_then_g2_adapters_load_and_generate(tmp_path):
    from safetensors.torch import load_file

    from empathkit.data.protocols import to_examples

    write_jsonl(make_dialogues(), tmp_path / "all.jsonl")
    train = {**TRAIN, "stages": ["g1", "g2"], "lr": 1e-2}
    cfg = {"method": "reg", "seed": 0, "model": {**MODEL, "finetune": "lora", "lora_r": 4}, "train": train,
           "data": {"source": str(tmp_path / "all.jsonl"), "protocol": "every-listener"}}
    rd = METHODS.get("reg").train(cfg, tmp_path / "run", progress=False)
    assert not (rd / "model").exists() and not (rd / "g2" / "model").exists()
    g1 = load_file(str(rd / "adapter" / "adapter_model.safetensors"))
    g2 = load_file(str(rd / "g2" / "adapter" / "adapter_model.safetensors"))
    assert g1 and g1.keys() == g2.keys() and all(".lora_" in k for k in g1)
    assert any(not torch.equal(g1[k], g2[k]) for k in g1)  # G2 continued G1's adapter
    assert json.loads((rd / "g2" / "train_summary.json").read_text())["finetune"] == "lora"
    gen = load_generator(run_dir=rd)
    assert type(gen).__name__ == "REGFiDRunGenerator" and gen.info["generator"] == "g2"
    exs = to_examples(make_dialogues(), "every-listener")[:2]
    preds = gen.generate(exs, GenerationSettings(max_new_tokens=4, batch_size=2), progress=False)
    assert all(len(p.extra["exemplars"]) == 2 for p in preds)
    assert all(sc.tokens > 0 for sc in gen.score(exs))


def _fid_g1(tmp_path, name: str, finetune: str, **train):
    import dataclasses

    dialogues = make_dialogues()
    dialogues = [dataclasses.replace(d, split="valid") if i % 4 == 3 else d for i, d in enumerate(dialogues)]
    write_jsonl(dialogues, tmp_path / "all.jsonl")
    model = {**MODEL, "finetune": finetune, **({"lora_r": 4} if finetune == "lora" else {})}
    cfg = {"method": "reg", "seed": 0, "model": model, "train": {**TRAIN, "stages": ["g1"], "lr": 1e-2, **train},
           "data": {"source": str(tmp_path / "all.jsonl"), "protocol": "every-listener"}}
    return METHODS.get("reg").train(cfg, tmp_path / name, progress=False), cfg


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_fid_checkpoints_hold_the_inner_model_resume_and_load_the_best(tmp_path, finetune):
    """The Trainer trains a ``FiDModel`` wrapper (one forward for DDP); its checkpoints must still be the inner
    model's own files (no ``model.`` prefix), a resumed run must equal an uninterrupted one, and early stopping's
    best model must be what is saved."""
    from safetensors.torch import load_file

    weights = "model.safetensors" if finetune == "full" else "adapter_model.safetensors"
    wdir = "model" if finetune == "full" else "adapter"
    # a constant lr: the schedule of a 2-step run then resumed to 3 equals the 3-step run's
    whole, _ = _fid_g1(tmp_path, "whole", finetune, max_steps=3, save_every=1, scheduler="constant")
    ck = load_file(str(whole / "checkpoints" / "checkpoint-2" / weights))
    assert ck and not any(k.startswith("model.") for k in ck)
    final = load_file(str(whole / wdir / weights))
    assert final.keys() == ck.keys() and any(not torch.equal(final[k], ck[k]) for k in ck)  # step 3 moved on

    part, cfg = _fid_g1(tmp_path, "part", finetune, max_steps=2, save_every=1, scheduler="constant")
    cfg["train"] = {**cfg["train"], "max_steps": 3, "resume": True}
    METHODS.get("reg").train(cfg, part, progress=False)
    summary = json.loads((part / "train_summary.json").read_text())
    assert summary["global_steps"] == 3 and summary["resumed_from"].endswith("checkpoint-2")
    resumed = load_file(str(part / wdir / weights))
    assert all(torch.allclose(resumed[k], final[k], atol=1e-6) for k in final)

    best, _ = _fid_g1(tmp_path, "best", finetune, max_steps=4, save_every=1, eval_every=1, early_stopping_patience=3,
                      lr=0.5)  # a large step: the validation loss is not monotone, so "best" need not be the last
    s = json.loads((best / "train_summary.json").read_text())
    log = [json.loads(x) for x in (best / "log.jsonl").read_text().splitlines()]
    evals = {r["step"]: r["eval_loss"] for r in log if "eval_loss" in r}
    step = min(evals, key=evals.get)
    assert s["best_eval_loss"] == pytest.approx(evals[step])
    kept = load_file(str(best / "checkpoints" / f"checkpoint-{step}" / weights))
    saved = load_file(str(best / wdir / weights))
    assert all(torch.equal(saved[k], kept[k]) for k in kept)
