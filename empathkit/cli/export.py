"""``empathkit export --format gguf --run RUN_DIR``: a trained run as GGUF for llama.cpp / Ollama.

    empathkit export --run runs/…-sft                      # merged model, f16 → runs/…-sft/gguf/
    empathkit export --run runs/…-ecg-lora --type q8_0     # base model + LoRA adapter (scale = the gate)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from empathkit.cli.common import console, friendly_errors


@friendly_errors
def export(run: Path = typer.Option(..., "--run", help="a trained causal-LM run directory (sft, empo, ecg-lora…)"),
           format: str = typer.Option("gguf", "--format", help="export format (gguf)"),
           type: str = typer.Option("f16", "--type", help="tensor type: f32 (lossless), f16, q8_0"),
           out: Optional[Path] = typer.Option(None, help="output folder (default: <run>/gguf)")):
    """Export a trained run for another runtime (GGUF: llama.cpp, Ollama; see docs/export.md)."""
    from empathkit.errors import ConfigError
    from empathkit.export.gguf import export_run

    if format != "gguf":
        raise ConfigError(f"--format {format!r}: only gguf is supported")
    info = export_run(run, out, type)
    for f in info["files"]:
        console.print(f"wrote {Path(info['dir']) / f}")
    if info["kind"] == "base+lora":
        console.print("ECG-LoRA: load the base with the adapter and set the adapter scale to the request's gate "
                      "(llama.cpp: --lora-scaled <adapter> <gate>)")
