"""Optional general-capability check with EleutherAI's lm-evaluation-harness (EmPO Table 3: MMLU 5-shot and the
Open LLM Leaderboard tasks) on a trained EmPO / SFT run or any model folder.

``lm_eval`` is not a dependency of empathkit (it pulls many packages and downloads task data from the Hugging Face
Hub). Install it yourself (``pip install lm-eval``) and make the task datasets available (online, or a pre-filled
``HF_DATASETS_CACHE`` with ``HF_DATASETS_OFFLINE=1``). Without the package, :func:`run_lm_eval` returns
``{"skipped": True, "reason": ...}`` and logs one line instead of failing; a missing task dataset is reported the
same way.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Sequence

log = logging.getLogger(__name__)

INSTALL_HINT = ("lm-evaluation-harness is not installed (optional): `pip install lm-eval`, then make the task "
                "datasets available (online or a pre-filled HF_DATASETS_CACHE)")


def _skip(reason: str) -> dict[str, Any]:
    log.warning("lm-eval check skipped: %s", reason)
    return {"skipped": True, "reason": reason}


def export_merged(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Save the EmPO run's policy (SFT and DPO adapters merged into the base weights) as a plain HF model folder."""
    from empathkit.methods.empo.trainer import load_empo_model

    model, tok, _ = load_empo_model(run_dir)
    merged = model.merge_and_unload()
    out = Path(out_dir)
    merged.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def run_lm_eval(model: str | Path, tasks: Sequence[str] = ("mmlu",), num_fewshot: int | None = 5,
                limit: int | float | None = None, batch_size: int | str = 8, device: str = "cpu",
                out_file: str | Path | None = None) -> dict[str, Any]:
    """Run lm-eval ``tasks`` on ``model``: an EmPO run directory (merged and exported to a temporary folder first)
    or a HF model folder / hub id. Returns ``{task: {metric: value}}`` or ``{"skipped": True, "reason": ...}``."""
    if importlib.util.find_spec("lm_eval") is None:
        return _skip(INSTALL_HINT)
    import lm_eval  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(model)
        if (path / "adapter" / "adapter_config.json").is_file() and (path / "config.yaml").is_file():
            path = export_merged(path, Path(tmp) / "merged")
        try:
            res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={path},dtype=float32",
                                          tasks=list(tasks), num_fewshot=num_fewshot, limit=limit,
                                          batch_size=batch_size, device=device)
        except Exception as e:  # noqa: BLE001 — offline task data, unknown task: report, do not crash a study
            return _skip(f"lm-eval failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    scores = {t: {k: v for k, v in m.items() if isinstance(v, (int, float))} for t, m in res["results"].items()}
    if out_file:
        Path(out_file).write_text(json.dumps(scores, indent=2), encoding="utf-8")
    return scores
