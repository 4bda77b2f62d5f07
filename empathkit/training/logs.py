"""``log.jsonl``: the append-only JSONL log of a training run (one row per log / eval / diagnostics step), written by
rank 0 only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class JsonlLog:
    """Append-only JSONL log (``log.jsonl`` in the run dir)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> int:
        """Drop the rows of steps after ``step`` (a resumed run redoes them: without this they would appear twice);
        the file is rewritten atomically. Returns the number of rows dropped."""
        if not self.path.is_file():
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines()
        keep = [ln for ln in lines if ln.strip() and _step(ln) <= step]
        dropped = sum(1 for ln in lines if ln.strip()) - len(keep)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")
            tmp.replace(self.path)
        return dropped

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({**row, "time": round(time.time(), 2)}, ensure_ascii=False) + "\n")


def _step(line: str) -> float:
    try:
        step = json.loads(line).get("step", 0)
    except (json.JSONDecodeError, AttributeError):  # a line cut by a kill: dropped with the redone steps
        return float("inf")
    return step if isinstance(step, (int, float)) else 0


class JsonlCallback(TrainerCallback):
    """Mirrors the Trainer's own logs (loss, learning rate, grad norm, eval loss) into ``log.jsonl`` (rank 0)."""

    def __init__(self, sink: JsonlLog):
        self.sink = sink

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
            self.sink.write({"kind": kind, "step": state.global_step, "epoch": state.epoch, **logs})
