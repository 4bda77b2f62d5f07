"""Multi-process training through accelerate, on CPU (gloo), for SFT, ECG-LoRA and EmPO on the tiny random Llama:
two processes really train (the loss falls, at the single-process scale), ONE run directory written by rank 0 only
(no duplicated log rows, one train summary), and a resumed run continues the global step.

On CPU ``accelerate launch --cpu --num_processes 2`` starts ONE process unless MPI is installed (accelerate's CPU
launcher is mpirun); the two-process CPU path is accelerate's torchrun launcher with the CPU flag in the environment,
``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 …`` — the same ``accelerate launch -m
empathkit.cli.main train`` path as the GPU recipes. The single-process launch is refused with that hint (tested).
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from empathkit.testing import make_dialogues

needs_accelerate = pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate missing")

# 8 examples = one global batch of 2 processes × 4: every step sees the same data, so the logged loss is comparable
COMMON = ["data.train_limit=8", "model.backbone=tiny-random-llama", "train.batch_size=4", "train.max_length=48",
          "train.lr=2e-2", "train.warmup_ratio=0", "train.scheduler=constant", "train.log_every=1",
          "train.early_stopping_patience=null", "train.save_every=2"]
METHOD_ARGS = {
    "sft": ["--method", "sft", "model.lora_r=8", "train.log_emotion_grads=true"],
    "ecg-lora": ["--method", "ecg-lora", "model.lora_r=8", "model.d_emo=8", "train.gate_lr=0.05",
                 "train.log_emotion_grads=true"],
    "empo": ["--method", "empo", "data.protocol=last-listener", "model.lora_r=8", "model.system_prompt=Be kind.",
             "train.lr=1e-2", "train.dpo.epochs=2", "train.dpo.batch_size=2", "train.dpo.gradient_accumulation_steps=1",
             "train.dpo.train_limit=4", "train.dpo.learning_rate=1e-2", "train.dpo.save_steps=1", "train.dpo.logging_steps=1"],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cwd: Path, train_args: list[str], launcher: tuple[str, ...] = ("--multi_gpu", "--num_processes", "2"),
            check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", *launcher, "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
           "-m", "empathkit.cli.main", "train", "--quiet", *train_args]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0 or not check, f"exit {res.returncode}\n{res.stdout}\n{res.stderr[-6000:]}"
    return res


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _loss_steps(rows: list[dict]) -> list[int]:
    return [r["step"] for r in rows if "loss" in r]


def _check_log(log: Path, steps: int) -> list[float]:
    """Rank 0 wrote each row once: one train row per step, one diagnostics / gate row per log step."""
    rows = _rows(log)
    assert _loss_steps([r for r in rows if r["kind"] == "train"]) == list(range(1, steps + 1))
    for kind in ("grad", "gate"):
        ks = [r["step"] for r in rows if r["kind"] == kind]
        assert len(ks) == len(set(ks)), f"duplicated {kind} rows: {ks}"
    return [r["loss"] for r in rows if r["kind"] == "train" and "loss" in r]


def _check_falls(losses: list[float]) -> None:
    # a random model's loss is ≈ ln(vocab) ≈ 10.4 whatever the number of processes (the cross-process token
    # average is rescaled like Trainer.compute_loss does; unscaled, 2 processes would log — and step — half of it)
    assert losses[0] > 8, losses
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2 - 0.05, f"loss did not fall: {losses}"


def _check_one_run(runs: Path, res: subprocess.CompletedProcess) -> Path:
    dirs = sorted(runs.iterdir())
    assert len(dirs) == 1, f"one run directory expected, got {[d.name for d in dirs]}"
    assert [line for line in res.stdout.splitlines() if line.strip()] == [str(dirs[0])]  # printed by rank 0 only
    return dirs[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from empathkit.data.jsonl import write_jsonl

    p = tmp_path_factory.mktemp("dist-data") / "dialogues.jsonl"
    write_jsonl(make_dialogues(), p)
    return p


@pytest.mark.parametrize("method", ["sft", "ecg-lora"])
@pytest.mark.integration
@needs_accelerate
@pytest.mark.timeout(900)
def test_two_processes_train_one_run_dir_and_resume(method, data, tmp_path):
    args = [*COMMON, f"data.source={data}", *METHOD_ARGS[method]]  # later overrides win
    runs = tmp_path / "runs"
    res = _launch(tmp_path, [*args, "--out", str(runs), "train.max_steps=4"])
    rd = _check_one_run(runs, res)
    summary = json.loads((rd / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_steps"] == 4
    assert list(runs.rglob("train_summary.json")) == [rd / "train_summary.json"]
    assert {p.name for p in (rd / "checkpoints" / "checkpoint-4").glob("rng_state_*.pth")} == \
        {"rng_state_0.pth", "rng_state_1.pth"}  # both processes trained
    _check_falls(_check_log(rd / "log.jsonl", 4))
    if method == "ecg-lora":
        assert (rd / "adapter" / "ecg_gate.safetensors").is_file()
        assert (rd / "checkpoints" / "checkpoint-4" / "ecg_gate.safetensors").is_file()
        gate_rows = [r for r in _rows(rd / "log.jsonl") if r["kind"] == "gate"]
        assert [r["step"] for r in gate_rows] == [0, 1, 2, 3] and "gate" in gate_rows[-1]
    gates_at_4 = summary.get("final_gates")

    # as if stopped after step 4: continue the same run to step 8
    _launch(tmp_path, [*args, "--run-dir", str(rd), "train.max_steps=8", "train.resume=true"])
    assert sorted(runs.iterdir()) == [rd]
    summary = json.loads((rd / "train_summary.json").read_text())
    assert summary["global_steps"] == 8 and Path(summary["resumed_from"]).name == "checkpoint-4"
    _check_falls(_check_log(rd / "log.jsonl", 8))
    if method == "ecg-lora":  # the gate state came back from checkpoint-4 too
        row = next(r for r in _rows(rd / "log.jsonl") if r["kind"] == "gate" and r["step"] == 4)
        assert row["gate"] == pytest.approx(gates_at_4, abs=1e-6)


@pytest.mark.integration
@needs_accelerate
@pytest.mark.timeout(900)
def test_two_processes_run_the_empo_pipeline_and_resume_dpo(data, tmp_path):
    args = [*COMMON, f"data.source={data}", *METHOD_ARGS["empo"]]
    runs = tmp_path / "runs"
    res = _launch(tmp_path, [*args, "--out", str(runs), "train.max_steps=4", "train.dpo.max_steps=1"])
    rd = _check_one_run(runs, res)
    sft = json.loads((rd / "sft" / "train_summary.json").read_text())
    assert sft["world_size"] == 2 and sft["global_steps"] == 4
    assert list(runs.rglob("train_summary.json")) == [rd / "sft" / "train_summary.json"]
    _check_falls(_check_log(rd / "sft" / "log.jsonl", 4))
    info = json.loads((rd / "dpo_info.json").read_text())
    assert info["world_size"] == 2 and info["global_step"] == 1 and (rd / "adapter" / "adapter_config.json").is_file()
    assert len(list((rd / "preference").glob("epoch-*.jsonl"))) == 2

    # stopped after DPO step 1: the rerun reuses the finished SFT stage and continues DPO from dpo/checkpoint-1
    _launch(tmp_path, [*args, "--run-dir", str(rd), "train.max_steps=4", "train.dpo.max_steps=-1",
                       "train.resume=true"])
    assert sorted(runs.iterdir()) == [rd]
    assert json.loads((rd / "sft" / "train_summary.json").read_text())["global_steps"] == 4  # not retrained
    info = json.loads((rd / "dpo_info.json").read_text())
    assert info["global_step"] == 2 and info["world_size"] == 2 and Path(info["resumed_from"]).name == "checkpoint-1"
    dpo = [r for r in _rows(rd / "dpo_log.jsonl") if "loss" in r]
    assert _loss_steps(dpo) == [1, 2]
    assert dpo[0]["loss"] == pytest.approx(0.6931, abs=1e-3) and dpo[-1]["loss"] < dpo[0]["loss"]  # policy = ref at 0


@pytest.mark.integration
@needs_accelerate
@pytest.mark.timeout(300)
def test_cpu_launcher_without_mpi_is_refused_not_run_single_process(data, tmp_path):
    res = _launch(tmp_path, ["--method", "sft", f"data.source={data}", "--out", str(tmp_path / "runs"), *COMMON],
                  launcher=("--cpu", "--num_processes", "2"), check=False)
    assert res.returncode != 0 and "started ONE process" in res.stderr and "--multi_gpu" in res.stderr
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------------------------------------------
# the helpers, without launching
def test_launch_checks_and_rank_helpers(monkeypatch):
    from empathkit.errors import ConfigError
    from empathkit.training import distributed as d

    for k in ("RANK", "WORLD_SIZE", "MASTER_PORT", "ACCELERATE_USE_CPU", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(k, raising=False)
    d.check_launch()
    assert d.world_size() == 1 and d.is_main() and d.main_then_broadcast(lambda: "x") == "x"
    d.barrier()  # no-op in one process
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(ConfigError, match="ONE process"):
        d.check_launch()
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert d.world_size() == 2 and not d.is_main()
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no GPU"):
            d.check_launch()
