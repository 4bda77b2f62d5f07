"""ReflectDiffu under two CPU processes (``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2``,
gloo): every rank trains its shard of each global batch and the averaged gradients keep the copies identical —
both ranks report the same weight digest, which is the saved network's. Skips when two processes cannot start
(the ``launcher`` fixture of tests/methods/test_reg_joint_distributed.py)."""

from __future__ import annotations

import json

import pytest

from empathkit.testing import make_dialogues
from tests.methods.test_distributed import needs_accelerate
from tests.methods.test_reflectdiffu_training import MODEL
from tests.methods.test_reg_joint_distributed import launch_train, launcher  # noqa: F401 (fixture)


@needs_accelerate
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_reflectdiffu_trains_identically_on_two_processes(launcher, tmp_path):  # noqa: F811
    from empathkit.data.jsonl import write_jsonl
    from empathkit.training.distributed import weights_digest

    write_jsonl(make_dialogues(), tmp_path / "all.jsonl")
    cfg = {"method": "reflectdiffu", "seed": 0, "model": MODEL,
           "data": {"source": str(tmp_path / "all.jsonl"), "protocol": "every-listener"},
           "train": {"batch_size": 4, "lr": 3e-3, "warmup_steps": 2, "log_every": 1, "save_every": 100,
                     "max_steps": 6, "early_stopping_patience": None}}
    rd = tmp_path / "run"
    launch_train(cfg, tmp_path, rd)
    s = json.loads((rd / "train_summary.json").read_text())
    assert s["world_size"] == 2 and s["steps"] == 6
    assert len(s["model_sha256"]) == 2 and s["model_identical"] is True
    from empathkit.api import load_generator

    assert weights_digest(load_generator(run_dir=rd).model) == s["model_sha256"][0]  # the saved network
    steps = [json.loads(x)["step"] for x in (rd / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # rank 0 alone writes the log
