"""``empathkit serve``: the OpenAI-compatible API + web chat page for the default model or a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from empathkit.cli.common import console, friendly_errors

# chat and serve's default reply budget: room for a whole empathetic reply (2-4 sentences; `generate` for evaluation
# keeps the recipe's budget). A reply that still hits it is trimmed to its last complete sentence (--no-trim: kept).
REPLY_TOKENS = 96


# interactive use runs bfloat16 weights where the CPU has native bf16 (2-2.6x batched generation at the same
# reference perplexity, models/precision.py); `generate` for evaluation keeps float32
CHAT_PRECISION = "auto"


def build_generator(method: str, run: Optional[Path], max_new_tokens: Optional[int], precision: str = CHAT_PRECISION,
                    backend: str = "transformers", gguf: Optional[Path] = None):
    """Shared by ``chat`` and ``serve``: a trained run (its own method) or a method with its default config, with
    ``max_new_tokens`` (default :data:`REPLY_TOKENS`) as its default reply budget, at ``precision``."""
    from empathkit.api import generation_settings, load_generator

    g = str(gguf) if gguf is not None else None
    gen = load_generator(method, run, precision=precision, backend=backend, gguf=g) if run is not None else \
        load_generator(method, None, {}, precision=precision, backend=backend, gguf=g)
    gen.default_settings = generation_settings(None, gen, {"max_new_tokens": max_new_tokens or REPLY_TOKENS,
                                                           "precision": precision, "backend": backend, "gguf": g})
    return gen


def set_threads(threads: Optional[int]) -> None:
    """torch intra-op threads; 1 is far faster when other jobs share the cores (OpenMP oversubscription)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def build_guards(safety_resources: Optional[Path], emotion_classifier: str):
    from empathkit.serving.emotion import EmotionDetector
    from empathkit.serving.safety import SafetyLayer, load_safety_config

    detector = EmotionDetector(None) if emotion_classifier in ("", "none") else EmotionDetector.load(emotion_classifier)
    return detector, SafetyLayer(load_safety_config(safety_resources))


@friendly_errors
def serve(method: str = typer.Option("prompt", help="registered method (see `empathkit methods`); ignored with --run"),
          run: Optional[Path] = typer.Option(None, "--run", help="a trained run directory to serve"),
          host: str = typer.Option("127.0.0.1", help="bind address (loopback by default; set an API key otherwise)"),
          port: int = typer.Option(8000, help="TCP port"),
          api_key: Optional[str] = typer.Option(None, "--api-key", envvar="EMPATHKIT_API_KEY",
                                                help="require 'Authorization: Bearer <key>' on /v1 routes"),
          max_batch: int = typer.Option(8, min=1, help="most rows generated together (either scheduler)"),
          max_wait_ms: float = typer.Option(20.0, min=0, help="how long the first request waits for others"),
          queue_size: int = typer.Option(64, min=1, help="waiting requests before answering 429"),
          timeout: float = typer.Option(120.0, min=0.1, help="seconds per request before 504"),
          max_new_tokens: Optional[int] = typer.Option(None, min=1, help=f"default reply budget in tokens "
                                                                         f"(default {REPLY_TOKENS})"),
          trim: bool = typer.Option(True, "--trim/--no-trim", help="trim a reply cut by the budget to its last "
                                    "complete sentence (untrimmed text in the metadata)"),
          threads: Optional[int] = typer.Option(None, min=1, help="torch threads (1 = best when the CPU is shared)"),
          precision: str = typer.Option(CHAT_PRECISION, help="weights: float32 | bfloat16 | auto (bf16 where native)"),
          backend: str = typer.Option("transformers", help="transformers | llama-cpp (a GGUF export; docs/export.md)"),
          gguf: Optional[Path] = typer.Option(None, help="GGUF file or export folder for --backend llama-cpp "
                                                         "(default: the run's export)"),
          max_prompt_tokens: Optional[int] = typer.Option(None, min=8, help="prompt token budget (default: the "
                                                          "model's context minus max_tokens, or the generator's)"),
          overflow: str = typer.Option("error", help="a last message over the budget: error (400) | truncate"),
          shutdown_grace: float = typer.Option(3.0, min=0, help="seconds SIGTERM waits for in-flight replies"),
          max_tokens_limit: int = typer.Option(512, min=1, help="largest max_tokens a request may ask for"),
          stream_mode: str = typer.Option("tokens", help="tokens (real token streaming) | chunks"),
          scheduler: str = typer.Option("continuous", help="continuous (requests join / leave the running batch "
                                        "between decoding steps) | micro (one batch per collected group)"),
          model_id: Optional[str] = typer.Option(None, help="model id in /v1/models (default empathkit-<method>)"),
          emotion_classifier: str = typer.Option("emotion", help="classifier kind for the user's emotion; none = off"),
          safety_resources: Optional[Path] = typer.Option(None, "--safety-resources",
                                                          help="YAML/JSON with crisis reply texts and resources")):
    """Serve POST /v1/chat/completions (+ streaming), GET /v1/models, GET /health and the web chat page at /."""
    from empathkit.config import validate
    from empathkit.serving.server import ServerSettings, create_app, run as run_server

    settings = validate(ServerSettings, dict(model_id=model_id, api_key=api_key or None, max_batch=max_batch,
                                             max_wait_ms=max_wait_ms, queue_size=queue_size, timeout=timeout,
                                             max_tokens_limit=max_tokens_limit, stream_mode=stream_mode,
                                             max_prompt_tokens=max_prompt_tokens, overflow=overflow,
                                             shutdown_grace=shutdown_grace, scheduler=scheduler), "serve")
    detector, safety = build_guards(safety_resources, emotion_classifier)
    set_threads(threads)
    gen = build_generator(method, run, max_new_tokens, precision, backend, gguf)
    app = create_app(gen, settings, emotion_detector=detector, safety=safety)
    app.state.batcher.trim = trim
    if not detector.available:
        from empathkit.classifiers.detect import HOW_TO_GET_ONE

        console.print(HOW_TO_GET_ONE, style="dim", markup=False, highlight=False)
    else:
        console.print("emotion: " + (detector.description or {}).get("summary", ""), style="dim", markup=False,
                      highlight=False)
    console.print(f"serving [cyan]{app.state.model_id}[/] on http://{host}:{port}  (web chat: /, API: /v1)"
                  + ("  [API key required]" if api_key else ""))
    run_server(app, host=host, port=port)
