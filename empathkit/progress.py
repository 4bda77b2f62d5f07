"""Progress display for long stages (training above all), shared by the CLI and the training drivers.

This module sits below everything: it imports only the standard library at import time (transformers is imported
when a callback is actually built), so the CLI can configure it before any heavy import and training code can use it
without importing the CLI.

- :func:`set_verbose` / :func:`is_verbose`: the process-wide switch the CLI sets once (``--verbose``). Library use
  defaults to verbose, i.e. transformers' own behaviour.
- ``QuietProgressCallback``: transformers' ``ProgressCallback`` with ONE bar per training run. Unless verbose, the
  Trainer's log dicts (``{'loss': …, 'grad_norm': …}``, ``{'train_runtime': …}``) become the bar's postfix
  (loss, eval_loss) instead of printed lines, and evaluation inside training adds no nested bar. The dicts are not
  lost: the training drivers' JSONL callback writes them to ``<run>/log.jsonl``.
- ``QuietPrinterCallback``: the same for ``disable_tqdm=True`` (transformers' ``PrinterCallback``).
- :func:`install_quiet_trainer_progress`: makes those transformers' defaults for every Trainer built afterwards
  (SFT, ECG-LoRA, TRL's DPOTrainer) through ``transformers.trainer.DEFAULT_PROGRESS_CALLBACK`` — the variable
  transformers itself re-binds to pick its notebook progress display — so training code needs no change. It waits
  for ``transformers.trainer`` to be imported (a one-shot import hook) instead of importing it (~4 s).
- :func:`quiet_trainer_callbacks`: the explicit per-trainer alternative with public ``Trainer`` API only.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import logging
import sys
from typing import Any, Callable

log = logging.getLogger(__name__)

_VERBOSE = True
LOSS_KEYS = ("loss", "eval_loss")  # log keys shown in the training bar's postfix when quiet


def set_verbose(verbose: bool) -> None:
    global _VERBOSE
    _VERBOSE = bool(verbose)


def is_verbose() -> bool:
    return _VERBOSE


@functools.lru_cache(maxsize=None)
def _callback_classes() -> tuple[type, type]:
    from tqdm.auto import tqdm
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class QuietProgressCallback(ProgressCallback):
        """``ProgressCallback`` with one bar per training run and no printed log dicts unless verbose."""

        def on_train_begin(self, args, state, control, **kwargs):
            if is_verbose():
                return super().on_train_begin(args, state, control, **kwargs)
            if state.is_world_process_zero:
                self.training_bar = tqdm(total=state.max_steps, desc="training", unit="step", dynamic_ncols=True)
            self.current_step = 0
            self.postfix: dict[str, str] = {}

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            # evaluation during training: the eval loss lands in the training bar's postfix, no nested bar
            if is_verbose() or self.training_bar is None:
                return super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if is_verbose():
                return super().on_log(args, state, control, logs=logs, **kwargs)
            if state.is_world_process_zero and self.training_bar is not None and logs:
                shown = {k: f"{v:.4g}" for k, v in logs.items() if k in LOSS_KEYS and isinstance(v, (int, float))}
                if shown:
                    self.postfix = {**getattr(self, "postfix", {}), **shown}
                    self.training_bar.set_postfix(self.postfix)

    class QuietPrinterCallback(PrinterCallback):
        """``PrinterCallback`` (used with ``disable_tqdm=True``) that prints nothing unless verbose."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if is_verbose():
                return super().on_log(args, state, control, logs=logs, **kwargs)

    return QuietProgressCallback, QuietPrinterCallback


def __getattr__(name: str) -> Any:  # the classes are built on first use so that importing this module stays cheap
    if name == "QuietProgressCallback":
        return _callback_classes()[0]
    if name == "QuietPrinterCallback":
        return _callback_classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def quiet_trainer_callbacks(trainer) -> None:
    """Swap a built Trainer's stock progress/printer callback for the quiet ones (public Trainer API only)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    progress_cls, printer_cls = _callback_classes()
    for stock, quiet in ((ProgressCallback, progress_cls), (PrinterCallback, printer_cls)):
        if any(type(cb) is stock for cb in trainer.callback_handler.callbacks):
            trainer.remove_callback(stock)
            trainer.add_callback(quiet)


def _patch_trainer_module(module) -> None:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    progress_cls, printer_cls = _callback_classes()
    # only replace the stock classes (a notebook's NotebookProgressCallback stays)
    if getattr(module, "DEFAULT_PROGRESS_CALLBACK", None) is ProgressCallback:
        module.DEFAULT_PROGRESS_CALLBACK = progress_cls
    # ``disable_tqdm=True`` adds ``PrinterCallback`` looked up by name in the same module
    if getattr(module, "PrinterCallback", None) is PrinterCallback:
        module.PrinterCallback = printer_cls


def install_quiet_trainer_progress() -> None:
    """Make the quiet callbacks transformers' defaults for every Trainer created from now on (idempotent)."""
    when_imported("transformers.trainer", _patch_trainer_module)


# ----------------------------------------------------------------------------------------------------------------
# a one-shot post-import hook: run fn(module) right after ``name`` is imported (now, if it already is)
def when_imported(name: str, fn: Callable[[Any], None]) -> None:
    module = sys.modules.get(name)
    if module is not None:
        _safe_call(fn, module)
        return
    if not any(isinstance(f, _PostImportFinder) and f.name == name and f.fn is fn for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder(name, fn))


def _safe_call(fn: Callable[[Any], None], module) -> None:
    try:
        fn(module)
    except Exception as e:  # a display nicety must never break an import
        log.debug("post-import hook %s on %s failed: %s", getattr(fn, "__name__", fn), module.__name__, e)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, fn: Callable[[Any], None]):
        self.name, self.fn = name, fn

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)  # one shot; the real finders below do the finding
        except ValueError:
            pass
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PostImportLoader(spec.loader, self.fn)
        return spec


class _PostImportLoader(importlib.abc.Loader):
    def __init__(self, loader, fn: Callable[[Any], None]):
        self._loader, self._fn = loader, fn

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _safe_call(self._fn, module)

    def __getattr__(self, name):  # get_source, get_filename, is_package … of the real loader
        return getattr(self._loader, name)
