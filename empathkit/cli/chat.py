"""``empathkit chat``: talk to the default model or a trained run in the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from empathkit.cli.common import friendly_errors


@friendly_errors
def chat(method: str = typer.Option("prompt", help="registered method (see `empathkit methods`); ignored with --run"),
         run: Optional[Path] = typer.Option(None, "--run", help="a trained run directory to chat with"),
         max_new_tokens: Optional[int] = typer.Option(None, min=1, help="reply budget in tokens (default 96)"),
         trim: bool = typer.Option(True, "--trim/--no-trim", help="trim a reply cut by the budget to its last "
                                                                  "complete sentence"),
         temperature: float = typer.Option(0.0, min=0.0, max=2.0, help="0 = greedy (default), > 0 = sampling"),
         seed: int = typer.Option(0, help="sampling seed"),
         threads: Optional[int] = typer.Option(None, min=1, help="torch threads (1 = best when the CPU is shared)"),
         precision: str = typer.Option("auto", help="weights: float32 | bfloat16 | auto (bf16 where native)"),
         backend: str = typer.Option("transformers", help="transformers | llama-cpp (a GGUF export; docs/export.md)"),
         gguf: Optional[Path] = typer.Option(None, help="GGUF file or export folder for --backend llama-cpp "
                                                        "(default: the run's export)"),
         emotion: Optional[str] = typer.Option(None, help="start with this emotion forced (like /emotion X)"),
         gate: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="start with this gate forced (/gate X)"),
         emotion_classifier: str = typer.Option("emotion", help="classifier kind for the user's emotion; 'none' = off"),
         safety_resources: Optional[Path] = typer.Option(None, "--safety-resources",
                                                         help="YAML/JSON with crisis reply texts and resources")):
    """Multi-turn chat; shows the detected emotion per turn. Commands: /emotion X, /gate 0.7, /reset, /quit."""
    from empathkit.cli.common import console
    from empathkit.cli.serve import build_generator, build_guards, set_threads
    from empathkit.serving.chat import ChatSession, run_terminal

    detector, safety = build_guards(safety_resources, emotion_classifier)
    set_threads(threads)
    with console.status("loading model …"):
        gen = build_generator(method, run, max_new_tokens, precision, backend, gguf)
    upd = {"do_sample": temperature > 0, "seed": seed} | ({"temperature": temperature} if temperature > 0 else {})
    from empathkit.api import generation_settings

    session = ChatSession(gen, generation_settings(None, gen, upd), detector, safety, trim=trim)
    for cmd in ([f"/emotion {emotion}"] if emotion else []) + ([f"/gate {gate}"] if gate is not None else []):
        console.print(f"[dim]{session.command(cmd)}[/]")
    run_terminal(session)
