"""REG's joint stage (Eq. 7) under two CPU processes (``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu
--num_processes 2``, gloo; see tests/methods/test_distributed.py): the collective helpers it uses
(``distributed.average_gradients`` / ``main_first`` / ``all_gather``) on the real launcher, then a joint run on the
tiny random Llama + MiniLM — rank 0 alone decodes the missing G1 pairs into one cache, both ranks end with the same
query-encoder weights, which are saved once. Both launches skip when the launcher cannot start two processes here.
The sharding of the L_R queries and the zeroing of the query encoder's gradients are tested without launching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import yaml

from empathkit.methods.reg import joint as reg_joint
from empathkit.testing import make_dialogues
from tests.conftest import requires_minilm
from tests.methods.test_distributed import _free_port, needs_accelerate
from tests.methods.test_reg_joint import MODEL, TRAIN

ENV = {"ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}

HELPERS_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    from empathkit.training import distributed as d

    out = sys.argv[1]
    d.barrier()  # joins the process group: the launcher works
    r = d.rank()
    open(os.path.join(out, f"started-{r}"), "w").close()
    a, b, c = (torch.nn.Parameter(torch.zeros(n)) for n in (3, 2, 1))
    a.grad = torch.full((3,), float(r + 1))        # ranks: 1 and 2 -> mean 1.5
    if r == 1:
        b.grad = torch.tensor([4.0, 6.0])          # only rank 1 has one -> [2, 3] on both; c: none anywhere
    res = {"given": d.average_gradients([a, b, c]), "a": a.grad.tolist(),
           "b": None if b.grad is None else b.grad.tolist(), "c_none": c.grad is None,
           "first": d.main_first(lambda: f"rank {d.rank()} did it"), "all": d.all_gather(r * 10)}
    try:
        d.main_first(lambda: 1 / 0)
        res["error"] = None
    except ZeroDivisionError:
        res["error"] = "ZeroDivisionError"
    except RuntimeError as e:
        res["error"] = str(e)
    with open(os.path.join(out, f"rank-{r}.json"), "w") as f:
        json.dump(res, f)
    d.barrier()
    torch.distributed.destroy_process_group()
''')


def _launch(cwd: Path, target: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "accelerate.commands.accelerate_cli", "launch", "--multi_gpu", "--num_processes",
           "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
           str(_free_port()), *target]
    return subprocess.run(cmd, cwd=cwd, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=timeout,
                          check=False)


def launch_train(cfg: dict, tmp_path: Path, rd: Path) -> None:
    """``empathkit train -c <cfg as YAML> --run-dir rd`` under two launched processes; fails with both outputs."""
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    res = _launch(tmp_path, ["-m", "empathkit.cli.main", "train", "--quiet", "-c", str(tmp_path / "run.yaml"),
                             "--run-dir", str(rd)], timeout=540)
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr[-6000:]}"


@pytest.fixture(scope="module")
def launcher(tmp_path_factory) -> dict:
    """Both ranks' results of HELPERS_SCRIPT; skips when the two processes never started."""
    d = tmp_path_factory.mktemp("reg-dist-helpers")
    (d / "helpers.py").write_text(HELPERS_SCRIPT)
    try:
        res = _launch(d, [str(d / "helpers.py"), str(d)], timeout=180)
    except subprocess.TimeoutExpired:
        pytest.skip("accelerate launch did not finish starting two CPU processes in 180 s")
    if not ((d / "started-0").is_file() and (d / "started-1").is_file()):
        pytest.skip(f"accelerate launch cannot start two CPU processes here: {res.stderr[-800:]}")
    assert res.returncode == 0, res.stderr[-4000:]
    return {r: json.loads((d / f"rank-{r}.json").read_text()) for r in (0, 1)}


@needs_accelerate
@pytest.mark.timeout(300)
def test_gradient_average_broadcast_and_gather_across_two_processes(launcher):
    for r in (0, 1):
        got = launcher[r]
        assert got["a"] == [1.5] * 3 and got["b"] == [2.0, 3.0] and got["c_none"] and got["given"] == 2
        assert got["first"] == "rank 0 did it" and got["all"] == [0, 10]
    assert launcher[0]["error"] == "ZeroDivisionError"  # rank 0 re-raises its own error; rank 1 is told
    assert launcher[1]["error"] == "rank 0 failed: ZeroDivisionError: division by zero"


@requires_minilm
@needs_accelerate
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_joint_stage_in_two_processes(launcher, tmp_path):
    from empathkit.data.jsonl import write_jsonl
    from empathkit.methods import METHODS
    from empathkit.methods.reg.retriever import QueryEncoder

    write_jsonl(make_dialogues(), tmp_path / "all.jsonl")
    cfg = {"method": "reg", "seed": 0, "model": MODEL, "data": {"source": str(tmp_path / "all.jsonl"),
                                                                 "protocol": "every-listener"},
           "train": TRAIN | {"stages": ["g1"], "max_steps": 1}}
    rd = tmp_path / "run"
    METHODS.get("reg").train(cfg, rd, progress=False)  # G1 in this process; no stage 2: joint decodes every pair
    cfg["train"] = TRAIN | {"stages": ["joint"]}
    launch_train(cfg, tmp_path, rd)

    summary = json.loads((rd / "g2" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["reg_stage"] == "joint" and summary["global_steps"] == 3
    sha = summary["query_encoder_sha256"]
    assert len(sha) == 2 and sha[0] == sha[1] and summary["query_encoder_identical"] is True
    saved = [p for p in rd.rglob(reg_joint.QUERY_ENCODER) if "checkpoints" not in p.parts]
    assert saved == [rd / "g2" / "adapter" / reg_joint.QUERY_ENCODER]
    assert reg_joint.weights_digest(QueryEncoder.load(saved[0]).model) == sha[0]  # what both ranks held
    assert reg_joint.weights_digest(QueryEncoder.from_encoder("minilm-l6").model) != sha[0]  # and it trained
    # rank 0 alone decoded: one cache file, each pair once, as many rows as the summary says were decoded
    files = list((rd / "retriever" / "decodes").glob("g1-decodes-*.jsonl"))
    assert len(files) == 1
    rows = [json.loads(x) for x in files[0].read_text().splitlines()][1:]
    pairs = [(r["query"], r["exemplar"]) for r in rows]
    assert len(pairs) == len(set(pairs)) == summary["retriever_decoded"] > 0
    joint_rows = [json.loads(x) for x in (rd / "g2" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in joint_rows if r.get("kind") == "joint"]
    assert steps and len(steps) == len(set(steps))  # rank 0 logs


@requires_minilm
@needs_accelerate
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_retriever_stage_runs_on_rank_0_in_two_processes(launcher, tmp_path):
    """Stage 2 under ``accelerate launch``: rank 0 alone trains the query encoder (one log, one cache) while the
    other rank waits; then G2 trains on both ranks with the stage-2 retriever's exemplars."""
    from empathkit.data.jsonl import write_jsonl
    from empathkit.methods import METHODS

    write_jsonl(make_dialogues(), tmp_path / "all.jsonl")
    cfg = {"method": "reg", "seed": 0, "model": MODEL, "data": {"source": str(tmp_path / "all.jsonl"),
                                                                 "protocol": "every-listener"},
           "train": TRAIN | {"stages": ["g1"], "max_steps": 1}}
    rd = tmp_path / "run"
    METHODS.get("reg").train(cfg, rd, progress=False)
    cfg["train"] = TRAIN | {"stages": ["retriever", "g2"]}
    launch_train(cfg, tmp_path, rd)
    assert (rd / "retriever" / "query_encoder").is_dir()
    rlog = [json.loads(x) for x in (rd / "retriever" / "retriever_log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rlog if "step" in r]
    assert steps and len(steps) == len(set(steps))  # one writer
    files = list((rd / "retriever" / "decodes").glob("g1-decodes-*.jsonl"))
    assert len(files) == 1
    pairs = [(r["query"], r["exemplar"]) for r in map(json.loads, files[0].read_text().splitlines()[1:])]
    assert pairs and len(pairs) == len(set(pairs))
    summary = json.loads((rd / "g2" / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["reg_stage"] == "g2" and summary["global_steps"] == 3
    stages = json.loads((rd / "reg_stages.json").read_text())
    assert stages["stages"] == ["retriever", "g2"] and stages["seconds"]["retriever"] > 0


@requires_minilm
@needs_accelerate
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_fid_stages_in_two_processes(launcher, tmp_path):
    """FiD G1 → retriever → joint under two processes: DDP sees the whole FiD pass (``FiDModel``), so both ranks
    end every stage with identical generator weights; the query encoder is synchronised as in the causal joint."""
    from empathkit.data.jsonl import write_jsonl
    from tests.methods.test_reg_fid import MODEL as FID_MODEL, TRAIN as FID_TRAIN

    write_jsonl(make_dialogues(), tmp_path / "all.jsonl")
    cfg = {"method": "reg", "seed": 0, "model": FID_MODEL, "train": FID_TRAIN,
           "data": {"source": str(tmp_path / "all.jsonl"), "protocol": "every-listener"}}
    rd = tmp_path / "run"
    launch_train(cfg, tmp_path, rd)
    g1 = json.loads((rd / "train_summary.json").read_text())
    g2 = json.loads((rd / "g2" / "train_summary.json").read_text())
    for s in (g1, g2):
        assert s["world_size"] == 2 and len(s["model_sha256"]) == 2 and s["model_identical"] is True
    assert g1["model_sha256"][0] != g2["model_sha256"][0]  # G2 trained on from G1
    assert g2["reg_stage"] == "joint" and g2["query_encoder_identical"] is True
    assert (rd / "retriever" / "query_encoder").is_dir() and (rd / "g2" / "model" / reg_joint.QUERY_ENCODER).is_dir()
    files = list((rd / "retriever" / "decodes").glob("g1-decodes-*.jsonl"))
    assert len(files) == 1


# ---------------------------------------------------------------------------------------------- without launching
def test_each_rank_takes_a_disjoint_share_of_the_same_draw():
    dist = types.SimpleNamespace(queries=list(range(12)))
    one = reg_joint.JointParts(None, dist, [], 0.2, 1e-3, 6, seed=3)
    ranks = [reg_joint.JointParts(None, dist, [], 0.2, 1e-3, 3, seed=3, rank=r, world=2) for r in (0, 1)]
    seen = []
    for _ in range(4):  # two passes over the 12 queries
        whole, r0, r1 = one.next_ids(), ranks[0].next_ids(), ranks[1].next_ids()
        assert len(r0) == len(r1) == 3 and sorted(r0 + r1) == sorted(whole) and not set(r0) & set(r1)
        seen += r0 + r1
    assert sorted(seen[:12]) == sorted(seen[12:]) == list(range(12))


def test_query_encoder_gradients_are_zeroed_after_each_step_and_not_averaged_in_one_process(monkeypatch):
    """The Trainer's ``model.zero_grad()`` reaches G2 only: without the callback the query encoder's gradient of
    step 2 would hold step 1's too."""
    qenc = torch.nn.Linear(2, 1)
    parts = reg_joint.JointParts(qenc, types.SimpleNamespace(queries=[0]), [], 0.2, 1e-3, 1, seed=0)
    sync = reg_joint.QueryEncoderSync(parts)
    x = torch.tensor([[1.0, 2.0]])
    qenc(x).sum().backward()
    sync.on_pre_optimizer_step(None, None, None)  # one process: untouched
    assert qenc.weight.grad.tolist() == [[1.0, 2.0]]
    sync.on_optimizer_step(None, None, None)
    assert all(p.grad is None for p in qenc.parameters())
    qenc(2 * x).sum().backward()
    assert qenc.weight.grad.tolist() == [[2.0, 4.0]]  # this step's gradient alone
    # a REGJointTrainer registers the callback on itself (after the Trainer's own __init__, stubbed here)
    monkeypatch.setattr(reg_joint.CausalLMTrainer, "__init__", lambda self, *a, **kw: None)
    t, added = object.__new__(reg_joint.REGJointTrainer), []
    t.add_callback = added.append
    reg_joint.REGJointTrainer.__init__(t, joint=parts)
    assert [type(cb) for cb in added] == [reg_joint.QueryEncoderSync] and added[0].joint is parts
