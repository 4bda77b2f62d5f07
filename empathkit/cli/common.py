"""Shared CLI helpers: clean error reporting (no deep tracebacks for expected errors), logging, config loading."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable

from rich.console import Console

from empathkit.errors import EmpathkitError

console = Console(stderr=True, soft_wrap=True)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def friendly_errors(fn: Callable) -> Callable:
    """Print empathkit's own errors as one red line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmpathkitError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            sys.exit(2)

    return wrapper
