"""Integration: the real ED files (counts from the issue) and the real SmolLM2 through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import requires_data, requires_smollm2


@requires_data
@pytest.mark.integration
def test_real_ed_counts():
    from empathkit.data.stats import compute_stats

    st = compute_stats("ed")
    assert [st[s]["conversations"] for s in ("train", "valid", "test")] == [19532, 2770, 2547]
    assert [st[s]["examples"] for s in ("train", "valid", "test")] == [40252, 5738, 5259]
    assert all(len(st[s]["emotions"]) == 32 for s in st)


@requires_data
@requires_smollm2
@pytest.mark.integration
def test_cli_generate_prompt_baseline_on_real_data(tmp_path):
    out = tmp_path / "runs"
    r = subprocess.run([sys.executable, "-m", "empathkit.cli.main", "generate", "--method", "prompt", "--limit", "4",
                        "--out", str(out), "generation.max_new_tokens=12", "data.protocol=last-listener"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    run = next(out.iterdir())
    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["prediction"].strip() for row in rows)
    assert {"id", "emotion", "context", "reference", "prediction", "settings"} <= set(rows[0])
    assert (run / "config.yaml").is_file() and (run / "versions.json").is_file() and (run / "seed").is_file()


def test_cli_reports_bad_data_without_traceback(tmp_path):
    (tmp_path / "test.csv").write_text("conv_id,utterance_idx,context,prompt,speaker_idx,utterance\nc1,x,sad,p,0,u\n")
    r = subprocess.run([sys.executable, "-m", "empathkit.cli.main", "data", "stats", "--source", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "no train.csv" in r.stderr
