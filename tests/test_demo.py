"""The main job end to end on a tiny random backbone: trains both adapters, compares, writes the report."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.conftest import requires_data
from empathkit.cli.main import app


@requires_data
def test_demo_runs_end_to_end_on_tiny_backbone(tmp_path, monkeypatch):
    from pathlib import Path

    import empathkit.classifiers.quick as quick

    # the quick emotion classifier step (tested in tests/classifiers/test_quick.py) must not write the real cache
    trained = []
    monkeypatch.setattr(quick, "ensure_quick_emotion", lambda seed=0: trained.append(seed) or quick.QuickResult(
        "trained", Path("/cache/classifiers/emotion"), {"variant": "demo-quick", "test": {"accuracy": 0.399},
                                                        "train_seconds": 61.0}))
    out = tmp_path / "demo"
    r = CliRunner().invoke(app, ["demo", "--out", str(out), "--backbone", "tiny-random-llama", "--test-limit", "4",
                                 "--control-limit", "2", "--max-new-tokens", "4", "train.max_steps=2",
                                 "data.train_limit=16", "data.valid_limit=4", "train.eval_every=1"])
    assert r.exit_code == 0, r.output[-3000:]
    systems = json.loads((out / "comparison.json").read_text())
    assert list(systems) == ["prompt (zero-shot)", "LoRA", "ECG-LoRA"]
    for s in systems.values():
        assert {"bleu-4", "rouge-l", "dist-1", "dist-2"} <= set(s["scores"])
    assert (out / "ecg-lora" / "adapter").is_dir() and (out / "sft" / "adapter").is_dir()
    report = (out / "report" / "report.md").read_text()
    assert "Comparison on 4 ED test examples" in report and "Fig. 3" in report
    assert (out / "report" / "fig3_gate_distribution_ecg-lora.png").is_file()
    assert "empathkit chat --run" in r.output
    # a clean terminal: no Trainer log dicts, one bar per training run, the final summary with every number in full
    assert "{'loss'" not in r.output and "{'train_runtime'" not in r.output and "{'eval_loss'" not in r.output
    assert "FutureWarning" not in r.output and "Loading weights" not in r.output
    summary = r.output[r.output.rindex("ED test subset (n=4)"):]
    assert "…" not in summary
    for s in systems.values():
        for key in ("bleu-1", "rouge-l", "dist-2", "length"):
            assert f"{s['scores'][key]:.2f}" in summary
    assert f"report:     {out / 'report' / 'report.md'}" in summary
    assert "empathkit serve --run" in summary and "empathkit evaluate prompt=" in summary
    # the first chat has an emotion: the quick classifier was trained (or a trained one kept), and the summary says so
    assert trained == [0]
    assert "emotion:    quick demo classifier trained in 61 s (ED test-subset accuracy 0.399" in summary
