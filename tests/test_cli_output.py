"""A clean terminal: tables never truncate numbers (80 columns, piped output), library noise is silenced unless
``--verbose``, and the Trainer keeps one bar per training run without printing its log dicts."""

from __future__ import annotations

import io
import logging
import os
import sys
import warnings
from pathlib import Path

import pytest
from rich.console import Console

from empathkit import progress
from empathkit.cli import common
from empathkit.cli.demo import COLUMNS, _append_comparison, comparison_rows, print_summary
from empathkit.reports.tables import markdown_table

SCORES = {"prompt (zero-shot)": [9.5712, 0.5913, 0.1287, 0.0139, 0.0841, 49.1234, 81.5555, 26.25],
          "LoRA": [12.3456, 0.6321, 0.1512, 0.0112, 0.1109, 52.1, 100.0, 26.5],
          "ECG-LoRA": [10.9876, 0.6012, 0.1333, 0.0144, 0.1011, 48.0, 77.7777, 126.25]}


def _systems(tmp_path: Path) -> dict:
    out = {}
    for name, vals in SCORES.items():
        scores = dict(zip(COLUMNS + ("length",), vals))
        out[name] = {"scores": scores, "generate_s": 12.3, "run_dir": str(tmp_path / name.split()[0].lower()),
                     "example": "That sounds hard."} | ({"train_s": 99.0} if name != "prompt (zero-shot)" else {})
    return out


def _expected_cells() -> list[str]:
    return [f"{v:.2f}" for vals in SCORES.values() for v in vals]


def _render(width: int, terminal: bool, tmp_path: Path) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=terminal, color_system=None, soft_wrap=True)
    systems = _systems(tmp_path)
    print_summary(con, systems, {"LoRA": tmp_path / "sft", "ECG-LoRA": tmp_path / "ecg-lora"},
                  tmp_path / "report" / "report.md", tmp_path, 8, 321.0)
    return buf.getvalue()


@pytest.mark.parametrize("width,terminal", [(80, True), (80, False), (120, True), (50, True), (200, False)])
def test_demo_summary_prints_every_number_in_full(tmp_path, width, terminal):
    text = _render(width, terminal, tmp_path)
    assert "…" not in text
    for cell in _expected_cells():
        assert cell in text, (cell, text)
    for name in SCORES:
        assert name in text.replace("\n", " ") or name.replace(" ", "") in text.replace(" ", "").replace("\n", "")
    assert f"report:     {tmp_path / 'report' / 'report.md'}" in text
    assert f"empathkit chat --run {tmp_path / 'ecg-lora'}" in text
    assert f"empathkit serve --run {tmp_path / 'ecg-lora'}" in text
    assert "empathkit evaluate prompt=" in text and "lora=" in text and "ecg-lora=" in text


def test_wide_terminal_gets_a_rich_table_and_pipes_get_markdown(tmp_path):
    tty = _render(80, True, tmp_path)
    assert "| system |" not in tty and "bleu-1" in tty
    for line in tty.split("BLEU:")[0].splitlines():  # the table itself fits (text lines soft-wrap)
        assert len(line) <= 80
    piped = _render(80, False, tmp_path)
    header, rows = comparison_rows(_systems(tmp_path))
    assert markdown_table(header, rows, align="lrrrrrrrr") in piped
    narrow = _render(50, True, tmp_path)  # too narrow for every number: Markdown, one line per row
    assert "| LoRA | 12.35 |" in narrow


def test_print_table_folds_long_labels_but_not_numbers():
    buf = io.StringIO()
    con = Console(file=buf, width=80, force_terminal=True, color_system=None)
    common.print_table(["system", "a-long-metric", "b"], [["a very long system name that needs folding", "123456.78",
                                                           "0.12"]], out=con)
    text = buf.getvalue()
    assert "123456.78" in text and "0.12" in text and "…" not in text


@pytest.fixture
def restore_global_state(monkeypatch):
    """quiet_libraries changes process-wide state: put it back after the test."""
    for k in common.QUIET_ENV:
        monkeypatch.delenv(k, raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in common.QUIET_LOGGERS + ("empathkit",)}
    meta_path = list(sys.meta_path)
    with warnings.catch_warnings():
        yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, lv in levels.items():
        logging.getLogger(n).setLevel(lv)
    sys.meta_path[:] = meta_path
    progress.set_verbose(True)


def test_quiet_libraries_silences_library_noise_but_not_empathkit(restore_global_state, capsys):
    common.quiet_libraries(verbose=False)
    assert not progress.is_verbose()
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn("`x` is deprecated", FutureWarning)
        warnings.warn("something", UserWarning)
        warnings.warn("old", DeprecationWarning)
    assert caught == []
    assert logging.getLogger("transformers").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("absl").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("empathkit.training.driver").isEnabledFor(logging.INFO)
    assert not logging.getLogger("empathkit.training.driver").isEnabledFor(logging.DEBUG)


def test_verbose_keeps_the_libraries_behaviour(restore_global_state):
    common.quiet_libraries(verbose=True)
    assert progress.is_verbose()
    assert "TRANSFORMERS_VERBOSITY" not in os.environ
    assert logging.getLogger("empathkit.x").isEnabledFor(logging.DEBUG)


def test_concise_log_format():
    fmt = common._ConciseFormatter("%(message)s")
    rec = logging.LogRecord("empathkit.training.driver", logging.INFO, __file__, 1, "trainable: %s", ("5",), None)
    assert fmt.format(rec) == "trainable: 5"
    rec.levelno, rec.levelname = logging.WARNING, "WARNING"
    assert fmt.format(rec) == "warning: trainable: 5"


def test_when_imported_runs_once_after_the_import(tmp_path, monkeypatch):
    (tmp_path / "ek_hooked_mod.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    progress.when_imported("ek_hooked_mod", lambda m: seen.append(m.VALUE))
    assert seen == []
    import ek_hooked_mod  # noqa: F401

    assert seen == [1]
    assert not any(isinstance(f, progress._PostImportFinder) and f.name == "ek_hooked_mod" for f in sys.meta_path)
    assert ek_hooked_mod.__loader__.__class__.__name__ != "_PostImportLoader"
    progress.when_imported("ek_hooked_mod", lambda m: seen.append(2))  # already imported: runs now
    assert seen == [1, 2]
    sys.modules.pop("ek_hooked_mod", None)


class _State:
    is_world_process_zero = True
    is_local_process_zero = True
    max_steps = 3
    global_step = 0


def test_quiet_progress_callback_one_bar_no_log_dicts(capsys, monkeypatch):
    pytest.importorskip("transformers")
    from transformers.trainer_callback import ProgressCallback

    monkeypatch.setattr(progress, "_VERBOSE", False)
    cb = progress.QuietProgressCallback()
    assert isinstance(cb, ProgressCallback)
    state = _State()
    cb.on_train_begin(None, state, None)
    for step in (1, 2):
        state.global_step = step
        cb.on_step_end(None, state, None)
        cb.on_log(None, state, None, logs={"loss": 3.51234, "grad_norm": 1.2, "learning_rate": 0.0, "epoch": 0.02})
    cb.on_prediction_step(None, state, None, eval_dataloader=[1, 2, 3])  # no nested bar during training
    assert cb.prediction_bar is None
    cb.on_log(None, state, None, logs={"eval_loss": 3.69, "eval_runtime": 4.2})
    assert cb.training_bar.postfix == "loss=3.512, eval_loss=3.69"
    cb.on_log(None, state, None, logs={"train_runtime": 27.4, "train_loss": 3.9})
    cb.on_train_end(None, state, None)
    out = capsys.readouterr()
    assert "{'" not in out.out + out.err and "train_runtime" not in out.out + out.err

    monkeypatch.setattr(progress, "_VERBOSE", True)  # verbose: exactly transformers' ProgressCallback
    cb = progress.QuietProgressCallback()
    cb.on_train_begin(None, state, None)
    cb.on_log(None, state, None, logs={"loss": 3.5})
    cb.on_train_end(None, state, None)
    assert "'loss'" in "".join(capsys.readouterr())


def test_trainer_default_progress_callback_is_swapped_only_when_quiet(restore_global_state, monkeypatch):
    trainer_mod = pytest.importorskip("transformers.trainer")
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    monkeypatch.setattr(trainer_mod, "DEFAULT_PROGRESS_CALLBACK", ProgressCallback)
    monkeypatch.setattr(trainer_mod, "PrinterCallback", PrinterCallback)
    common.quiet_libraries(verbose=True)
    assert trainer_mod.DEFAULT_PROGRESS_CALLBACK is ProgressCallback
    common.quiet_libraries(verbose=False)
    assert trainer_mod.DEFAULT_PROGRESS_CALLBACK is progress.QuietProgressCallback
    assert trainer_mod.PrinterCallback is progress.QuietPrinterCallback


def test_report_comparison_uses_the_shared_markdown_writer(tmp_path):
    report = tmp_path / "report.md"
    report.write_text("# Report\n", encoding="utf-8")
    _append_comparison(report, _systems(tmp_path), 8)
    text = report.read_text(encoding="utf-8")
    assert "## Comparison on 8 ED test examples" in text
    assert "| system | bleu-1 | bleu-4 | rouge-1 | rouge-2 | rouge-l | dist-1 | dist-2 | length |\n|---|" + "---:|" * 8 in text
    assert "| LoRA | 12.35 | 0.63 | 0.15 | 0.01 | 0.11 | 52.10 | 100.00 | 26.50 |" in text
    assert "- **ECG-LoRA**: That sounds hard." in text
