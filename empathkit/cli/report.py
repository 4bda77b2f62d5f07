"""``empathkit report RUN_DIR…``: ECG-LoRA analyses (paper Figs. 2–6) + a Markdown summary of the runs.

    empathkit report runs/…-sft runs/…-ecg-lora                    # figures from the training logs
    empathkit report runs/…-ecg-lora --control --control-limit 16   # + causal-control curve (generates)
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from empathkit.cli.common import console, friendly_errors


@friendly_errors
def report(run_dirs: List[Path] = typer.Argument(..., help="trained run directories (sft / ecg-lora / …)"),
           out: Optional[Path] = typer.Option(None, help="output folder (default: <first run>/report)"),
           control: bool = typer.Option(False, "--control/--no-control", help="compute the causal-control curve"),
           control_limit: int = typer.Option(16, help="examples for the causal-control curve"),
           control_gates: str = typer.Option("0,0.25,0.5,0.75,1", help="forced gate values"),
           control_metric: List[str] = typer.Option([], help="registered metric(s) over generations, e.g. ec, "
                                                             "rouge (ref-loglik is always computed)"),
           split: str = typer.Option("test")):
    """ECG-LoRA analyses: gate boxplot, gate dynamics, causal control, gradient allocation, strategy shift."""
    from empathkit.errors import ConfigError
    from empathkit.reports.run_report import make_report

    o = out or (run_dirs[0] / "report")
    try:
        gates = tuple(float(x) for x in control_gates.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--control-gates {control_gates!r}: give comma-separated numbers, e.g. 0,0.5,1") from None
    p = make_report(list(run_dirs), o, control, control_limit, gates, tuple(control_metric), split)
    console.print(f"report: {p}")
