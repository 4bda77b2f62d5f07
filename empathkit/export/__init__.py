"""Exports of trained runs to other runtimes: GGUF for llama.cpp / Ollama (:mod:`empathkit.export.gguf`)."""
