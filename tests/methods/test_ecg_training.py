"""ECG-LoRA training on the tiny random Llama: gates of different emotions are pulled apart, logging, save layout,
the w/o EmoCond ablation keeps one gate for all emotions."""

from __future__ import annotations

import json

import pytest

from empathkit.data import to_examples
from empathkit.testing import make_dialogues

pytestmark = pytest.mark.usefixtures("one_torch_thread")






def _cfg(**train):
    t = {"max_steps": 6, "batch_size": 6, "lr": 1e-3, "gate_lr": 0.05, "max_length": 64, "warmup_ratio": 0.0,
         "log_every": 3, "eval_every": 6, "early_stopping_patience": None, "log_emotion_grads": True}
    return {"method": "ecg-lora", "seed": 0, "model": {"backbone": "tiny-random-llama", "lora_r": 4, "d_emo": 8},
            "train": t | train}


@pytest.fixture(scope="module")
def three_emotions():
    return [e for e in to_examples(make_dialogues(), "every-listener") if e.emotion in ("joyful", "sad", "angry")]


def _spread(g: dict, emos=("joyful", "sad", "angry")) -> float:
    vals = sorted(g[e] for e in emos)
    return min(b - a for a, b in zip(vals, vals[1:]))


@pytest.fixture(scope="module")
def ecg_run(tmp_path_factory, three_emotions):
    from empathkit.methods.ecg_lora import train_ecg

    return train_ecg(_cfg(), tmp_path_factory.mktemp("ecg") / "run", three_emotions, None, progress=False)


def test_training_pulls_gates_apart_and_logs(ecg_run):
    from empathkit.methods.ecg_lora import load

    rd = ecg_run
    rows = [json.loads(x) for x in (rd / "log.jsonl").read_text().splitlines()]
    gate_rows = [r for r in rows if r["kind"] == "gate"]
    assert gate_rows[0]["step"] == 0 and len(gate_rows) >= 2
    assert set(gate_rows[0]["losses"]) >= {"con", "cons", "sep", "reg", "inter", "intra"}
    assert set(gate_rows[0]["gate_group"]) >= {"positive", "negative", "subtle"}
    assert set(gate_rows[0]["lr"]) >= {"lora", "gate"} and gate_rows[-1]["lr"]["gate"] != gate_rows[-1]["lr"]["lora"]
    assert any(r["kind"] == "grad" and r["grad_norm_group"] for r in rows)
    summary = json.loads((rd / "train_summary.json").read_text())
    before, after = gate_rows[0]["gate"], summary["final_gates"]
    assert _spread(before) == 0.0  # uniform init: every emotion starts at the same gate
    assert _spread(after) > 0.02  # the closest pair of the three emotions has been pulled apart
    params = json.loads((rd / "parameters.json").read_text())
    assert params["gate_parameters"] == 32 * 8 + 8 + 1 and params["lora_parameters"] > 0
    assert params["paper_backbones_same_adapter"]["Qwen2-7B-Instruct"]["lora_plus_gate_pct"] > 0
    assert (rd / "adapter" / "ecg_gate.safetensors").is_file() and (rd / "adapter" / "ecg_gate.json").is_file()
    gen = load({}, rd)
    assert gen.gate.values() == pytest.approx(after)


def test_no_emotion_conditioning_ablation_has_one_gate(tmp_path, three_emotions):
    from empathkit.methods.ecg_lora import train_ecg

    rd = train_ecg(_cfg(max_steps=2, ablation="no-emotion-conditioning", log_emotion_grads=False),
                   tmp_path / "abl", three_emotions, None, progress=False)
    s = json.loads((rd / "train_summary.json").read_text())
    assert len(set(s["final_gates"].values())) == 1
    assert s["aux_losses"] == {"con": False, "reg": False}


def test_report_writes_the_ecg_figures(ecg_run, three_emotions, tmp_path):
    from empathkit.reports.run_report import make_report

    out = tmp_path / "report"
    md = make_report([ecg_run], out, control=True, control_limit=3, control_gates=(0.0, 1.0), progress=False,
                     control_examples=three_emotions)
    names = {p.name.split("_")[0] for p in out.glob("*.png")}
    assert names == {"fig3", "fig4", "fig5", "fig6"}
    data = json.loads((out / "report.json").read_text())
    cc = data["runs"][str(ecg_run)]["causal_control"]
    ll = cc["scores"]["ref-loglik"]
    assert len(ll) == 2 and ll[0] != ll[1]  # the forced gate changes the reference likelihood
    assert "Fig. 5" in md.read_text()


def test_cli_train_prints_run_dir_and_finds_unfinished_runs(tmp_path, three_emotions):
    from typer.testing import CliRunner

    from empathkit.cli.main import app
    from empathkit.api import latest_unfinished_run
    from empathkit.data.jsonl import write_jsonl

    data = tmp_path / "dialogues.jsonl"
    write_jsonl([d for d in make_dialogues() if d.emotion in ("sad", "joyful")], data)
    res = CliRunner().invoke(app, ["train", "--method", "sft", "--out", str(tmp_path / "runs"), "--quiet",
                                   f"data.source={data}", "model.backbone=tiny-random-llama", "train.max_steps=2",
                                   "train.batch_size=4", "train.max_length=48", "train.eval_every=1"])
    assert res.exit_code == 0, res.output
    rd = next((tmp_path / "runs").iterdir())
    assert str(rd) in res.output and (rd / "adapter" / "adapter_model.safetensors").is_file()
    assert latest_unfinished_run(tmp_path / "runs", "sft") is None  # finished runs are not resumed
    (rd / "done").unlink()
    assert latest_unfinished_run(tmp_path / "runs", "sft") == rd
    bad = CliRunner().invoke(app, ["train", "--method", "prompt"])
    assert bad.exit_code == 2 and "nothing to train" in bad.output
