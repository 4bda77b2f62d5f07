"""Shared CLI helpers: clean error reporting (no deep tracebacks for expected errors), logging, a quiet terminal
(library warnings, logs and progress bars silenced unless ``--verbose``) and tables that stay readable when piped."""

from __future__ import annotations

import functools
import logging
import os
import sys
import warnings
from typing import Callable, Optional, Sequence

from rich.console import Console

from empathkit.errors import EmpathkitError
from empathkit.reports.tables import markdown_table

console = Console(stderr=True, soft_wrap=True)

# libraries whose Python loggers stay at ERROR when quiet (transformers and datasets also get their own verbosity)
QUIET_LOGGERS = ("transformers", "datasets", "huggingface_hub", "peft", "trl", "accelerate", "torch", "absl",
                 "matplotlib", "PIL", "sentence_transformers", "httpx", "httpcore", "urllib3", "filelock", "fsspec",
                 "nltk", "numexpr")
# warning categories ignored when quiet (empathkit's own messages go through logging, not ``warnings``)
QUIET_WARNINGS = (FutureWarning, UserWarning, DeprecationWarning, PendingDeprecationWarning)
# read by the libraries when they are imported (the CLI sets them before any heavy import); set only if unset
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "HF_HUB_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also transformers' "Loading weights" bars
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DELAY": "1",  # tqdm's documented env default: bars of sub-second steps (tokenising …) never show
    "PYTHONWARNINGS": ",".join(f"ignore::{c.__name__}" for c in QUIET_WARNINGS),  # child processes (workers)
}


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (test runners swap it), marked so that set-up stays idempotent."""

    empathkit = True

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


class _ConciseFormatter(logging.Formatter):
    """INFO lines are just the message; warnings and errors carry their level."""

    def format(self, record: logging.LogRecord) -> str:
        msg = super().format(record)
        return msg if record.levelno == logging.INFO else f"{record.levelname.lower()}: {msg}"


def setup_logging(verbose: bool = False) -> None:
    """empathkit's logs on stderr: concise INFO when quiet; DEBUG with logger names for everything when verbose."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, "empathkit", False)]:
        root.removeHandler(h)
    handler = _StderrHandler()
    if verbose:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
        logging.getLogger("empathkit").setLevel(logging.NOTSET)
    else:
        handler.setFormatter(_ConciseFormatter("%(message)s"))
        root.setLevel(logging.WARNING)  # other libraries: warnings only (most are ERROR below)
        logging.getLogger("empathkit").setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not getattr(h, "empathkit", False) for h in root.handlers):
        root.addHandler(handler)  # (an embedding application / test runner with its own handler keeps it)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def quiet_libraries(verbose: bool = False) -> None:
    """Set up the terminal once per process (the CLI entry point calls it).

    Quiet (the default): empathkit's own INFO logs, one progress bar per stage, and nothing else — library warnings
    (``warnings`` categories in ``QUIET_WARNINGS`` from transformers, peft, trl, torch, datasets …), library logging,
    library tqdm bars (HF hub / datasets / transformers' weight loading) and the Trainer's printed log dicts are
    silenced. The Trainer keeps one bar per training run (``empathkit.progress.QuietProgressCallback`` made the
    default through ``transformers.trainer.DEFAULT_PROGRESS_CALLBACK``), and its logs still go to ``log.jsonl``.
    Verbose: DEBUG logging and the libraries' own behaviour. Cheap: imports no heavy library; a library already
    imported (tests, notebooks) is configured through its API as well.
    """
    from empathkit import progress

    progress.set_verbose(verbose)
    setup_logging(verbose)
    if verbose:
        return
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    for cat in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", category=cat)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # libraries imported before this call (tests, notebooks) no longer read the environment: use their API
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].set_verbosity_error()
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    if "datasets" in sys.modules and hasattr(sys.modules["datasets"], "disable_progress_bars"):
        sys.modules["datasets"].utils.logging.set_verbosity_error()
        sys.modules["datasets"].disable_progress_bars()
    if "huggingface_hub.utils" in sys.modules:
        sys.modules["huggingface_hub.utils"].disable_progress_bars()
    progress.install_quiet_trainer_progress()


def friendly_errors(fn: Callable) -> Callable:
    """Print empathkit's own errors as one red line and exit 2 instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EmpathkitError as e:
            from rich.markup import escape

            console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)  # '[x]' in a message stays as is
            sys.exit(2)

    return wrapper


# ----------------------------------------------------------------------------------------------------------------
# tables
def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: Optional[str] = None,
                out: Optional[Console] = None) -> None:
    """Print a table whose first column is a label and the others are numbers, never truncating a number.

    On a terminal wide enough: a compact Rich table (the label column folds, number columns never wrap). Piped or
    redirected output, or a terminal too narrow for every number: a plain Markdown table (one line per row; the
    terminal may soft-wrap it, nothing is cut)."""
    from rich import box
    from rich.measure import Measurement
    from rich.table import Table

    out = out or console
    header = [str(h) for h in header]
    rows = [[str(c) for c in r] for r in rows]
    if out.is_terminal:
        words = [w for r in rows for w in r[0].split()] + header[0].split()
        table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
        table.add_column(header[0], overflow="fold", min_width=min(16, max(map(len, words), default=1)))
        for i, h in enumerate(header[1:], start=1):
            table.add_column(h, justify="right", no_wrap=True,
                             min_width=max([len(h)] + [len(r[i]) for r in rows if i < len(r)]))
        for r in rows:
            table.add_row(*r)
        need = Measurement.get(out, out.options.update(max_width=10_000), table).minimum
        if need <= out.width:
            out.print(table)
            return
    if title:
        out.print(title, markup=False, highlight=False)
    out.print(markdown_table(header, rows, align="l" + "r" * (len(header) - 1)), markup=False, highlight=False,
              soft_wrap=True)
