"""SFT: listener-only loss masks, LoRA / full training on the tiny random Llama, save → load, resume after a kill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from empathkit.data import to_examples
from empathkit.models.encoding import IGNORE, encode_example
from empathkit.training.collator import Collator
from empathkit.testing import make_dialogues

pytestmark = pytest.mark.usefixtures("one_torch_thread")





TINY = {"backbone": "tiny-random-llama"}


@pytest.fixture(scope="module")
def tok():
    from empathkit.models.backbones import load_tokenizer

    return load_tokenizer("tiny-random-llama")


@pytest.fixture(scope="module")
def examples():
    return to_examples(make_dialogues(), "every-listener")


def _label_text(tok, row):
    return tok.decode([t for t in row["labels"] if t != IGNORE])


def test_loss_only_on_target_listener_turn(tok, examples):
    ex = next(e for e in examples if len(e.context) == 3)
    row = encode_example(tok, ex, "Be kind.", 128)
    assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"])
    assert _label_text(tok, row) == ex.target + tok.eos_token  # the target turn + end-of-turn, nothing else
    text = tok.decode(row["input_ids"])
    assert all(t.text in text for t in ex.context) and "Be kind." in text
    # the trainable tokens are one contiguous block at the end (apart from trailing template whitespace)
    idx = [i for i, t in enumerate(row["labels"]) if t != IGNORE]
    assert idx == list(range(idx[0], idx[-1] + 1))


def test_all_listener_unmasks_context_listener_turns_not_speaker_turns(tok, examples):
    ex = next(e for e in examples if len(e.context) == 3)
    row = encode_example(tok, ex, None, 128, train_on="all-listener")
    lab = _label_text(tok, row)
    assert ex.context[1].text in lab and ex.target in lab
    assert ex.context[0].text not in lab and ex.context[2].text not in lab


def test_last_listener_protocol_and_truncation_keep_target(tok):
    ex = to_examples(make_dialogues(), "last-listener")[0]
    full = encode_example(tok, ex, None, 256)
    short = encode_example(tok, ex, None, 24)
    assert len(short["input_ids"]) <= 24 < len(full["input_ids"])
    assert _label_text(tok, short) == _label_text(tok, full) == ex.target + tok.eos_token


def test_collator_right_pads_labels_and_keeps_emotions(tok, examples):
    rows = [dict(encode_example(tok, e, None, 64), emotion_id=i) for i, e in enumerate(examples[:3])]
    b = Collator(tok)(rows)
    assert b["input_ids"].shape == b["labels"].shape and b["emotion_ids"].tolist() == [0, 1, 2]
    short = min(range(3), key=lambda i: len(rows[i]["input_ids"]))
    n = len(rows[short]["input_ids"])
    assert (b["labels"][short, n:] == IGNORE).all() and (b["attention_mask"][short, n:] == 0).all()
    assert tok.padding_side == "left"  # restored for generation


def _cfg(**train):
    base = {"max_steps": 4, "batch_size": 4, "eval_every": 2, "log_every": 2, "lr": 1e-3, "max_length": 64,
            "warmup_ratio": 0.0}
    return {"method": "sft", "seed": 0, "model": dict(TINY), "train": base | train}


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, examples):
    from empathkit.methods.sft import train_sft

    rd = tmp_path_factory.mktemp("sft") / "run"
    return train_sft(_cfg(log_emotion_grads=True), rd, examples[:16], examples[16:24], progress=False)


def test_lora_run_dir_layout_and_reload(lora_run, examples):
    from peft import PeftModel

    from empathkit.api import load_generator
    from empathkit.methods.sft import load_sft_model

    for f in ("config.yaml", "versions.json", "seed", "log.jsonl", "train_summary.json", "adapter/adapter_config.json"):
        assert (lora_run / f).is_file(), f
    summary = json.loads((lora_run / "train_summary.json").read_text())
    assert summary["global_steps"] == 4 and summary["best_eval_loss"] is not None
    rows = [json.loads(x) for x in (lora_run / "log.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} >= {"train", "eval", "grad"}
    model, tok = load_sft_model(lora_run)
    assert isinstance(model, PeftModel) and tok.padding_side == "left"
    assert any(float(p.abs().sum()) > 0 for n, p in model.named_parameters() if "lora_B" in n)  # trained (B starts 0)
    gen = load_generator(run_dir=lora_run)
    from empathkit.models.generation import GenerationSettings

    s = GenerationSettings(max_new_tokens=4, batch_size=4)
    a = [p.prediction for p in gen.generate(examples[:3], s, progress=False)]
    b = [p.prediction for p in load_generator(run_dir=lora_run).generate(examples[:3], s, progress=False)]
    assert a == b


def test_resume_after_kill_continues_from_last_checkpoint(lora_run, tmp_path, examples):
    from empathkit.methods.sft import train_sft

    rd = tmp_path / "resumed"
    shutil.copytree(lora_run, rd)
    for p in ("adapter", "done", "train_summary.json"):  # as if killed after the step-4 checkpoint
        shutil.rmtree(rd / p) if (rd / p).is_dir() else (rd / p).unlink()
    train_sft(_cfg(max_steps=6, resume=True), rd, examples[:16], examples[16:24], progress=False)
    s = json.loads((rd / "train_summary.json").read_text())
    assert s["global_steps"] == 6 and Path(s["resumed_from"]).name == "checkpoint-4"


def test_resume_from_an_earlier_checkpoint_does_not_duplicate_log_rows(lora_run, tmp_path, examples):
    from empathkit.methods.sft import train_sft

    rd = tmp_path / "resumed-early"
    shutil.copytree(lora_run, rd)
    cks = sorted((rd / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    for p in cks[1:] + [rd / "adapter", rd / "done", rd / "train_summary.json"]:  # killed after the first checkpoint
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    first = int(cks[0].name.split("-")[1])
    rows = [json.loads(x) for x in (rd / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) > first  # the log holds steps the resumed run will redo
    train_sft(_cfg(max_steps=4, resume=True), rd, examples[:16], examples[16:24], progress=False)
    rows = [json.loads(x) for x in (rd / "log.jsonl").read_text().splitlines()]
    for kind in ("train", "eval", "grad"):
        steps = [r["step"] for r in rows if r["kind"] == kind and (kind != "train" or "loss" in r)]
        assert len(steps) == len(set(steps)), (kind, steps)
    assert max(r["step"] for r in rows) == 4


def test_write_jsonl_is_atomic(tmp_path):
    from empathkit.runs import read_jsonl, write_jsonl

    p = tmp_path / "predictions.jsonl"
    write_jsonl([{"id": 1}], p)

    def rows():
        yield {"id": 2}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(rows(), p)
    assert read_jsonl(p) == [{"id": 1}] and list(tmp_path.iterdir()) == [p]  # old file intact, no temp left


def test_full_finetuning_saves_full_weights(tmp_path, examples):
    from empathkit.methods.sft import load_sft_model, train_sft

    cfg = _cfg(max_steps=2, early_stopping_patience=None)
    cfg["model"]["finetune"] = "full"
    rd = train_sft(cfg, tmp_path / "full", examples[:8], None, progress=False)
    assert (rd / "model" / "config.json").is_file() and not (rd / "adapter").exists()
    model, _ = load_sft_model(rd)
    s = json.loads((rd / "train_summary.json").read_text())
    assert s["parameters"]["trainable"] == s["parameters"]["total"] == sum(p.numel() for p in model.parameters())


def test_bad_config_names_the_key(tmp_path, examples):
    from empathkit.errors import ConfigError
    from empathkit.methods.sft import train_sft

    with pytest.raises(ConfigError, match="train.lr"):
        train_sft(_cfg(lr="fast"), tmp_path / "x", examples[:4], None, progress=False)


def test_bf16_autocast_trains_on_the_cpu(tmp_path, examples):
    """train.bf16: true on a CPU-only machine used to stop in TrainingArguments ("doesn't support bf16/gpu")."""
    import torch

    from empathkit.methods.sft import train_sft

    if torch.cuda.is_available():
        pytest.skip("the CPU path")
    rd = train_sft(_cfg(max_steps=2, early_stopping_patience=None, bf16=True), tmp_path / "bf16", examples[:8], None,
                   progress=False)
    assert (rd / "adapter" / "adapter_config.json").is_file() and (rd / "train_summary.json").is_file()
