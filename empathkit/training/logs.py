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

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({**row, "time": round(time.time(), 2)}, ensure_ascii=False) + "\n")


class JsonlCallback(TrainerCallback):
    """Mirrors the Trainer's own logs (loss, learning rate, grad norm, eval loss) into ``log.jsonl`` (rank 0)."""

    def __init__(self, sink: JsonlLog):
        self.sink = sink

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            kind = "eval" if any(k.startswith("eval_") for k in logs) else "train"
            self.sink.write({"kind": kind, "step": state.global_step, "epoch": state.epoch, **logs})
