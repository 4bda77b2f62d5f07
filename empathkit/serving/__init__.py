"""Serving: terminal chat, an OpenAI-compatible HTTP API with micro-batching, a web chat page, a crisis safety layer.

Importing this package is cheap; FastAPI / torch are imported by the submodules that need them:
``safety`` (crisis detection + replies), ``emotion`` (pluggable emotion detector), ``batcher`` (asyncio micro-batcher),
``server`` (``create_app``), ``chat`` (terminal loop). See docs/serving.md.
"""

from empathkit.serving.safety import SafetyConfig, SafetyLayer, SafetyResult, load_safety_config

__all__ = ["SafetyConfig", "SafetyLayer", "SafetyResult", "load_safety_config", "create_app"]


def create_app(*args, **kwargs):
    from empathkit.serving.server import create_app as _create_app

    return _create_app(*args, **kwargs)
