"""Helpers shared by benchmark scripts: write JSON + a Markdown table into benchmarks/results/."""

from __future__ import annotations

import json
import time
from pathlib import Path

from empathkit.reports.tables import markdown_table
from empathkit.runs import library_versions

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, payload: dict, table_rows: list[dict], title: str, notes: list[str] = ()) -> Path:
    """``results/<name>.json`` + ``.md``. ``date`` and ``versions`` are now's unless ``payload`` carries them (a
    table re-rendered from saved rows passes the measured run's, so re-rendering does not re-date it)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": _cpu(),
               "versions": library_versions(), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    cols = list(table_rows[0]) if table_rows else []
    md = [f"# {title}", "", f"Run {payload['date']} on this machine ({_cpu()}). Raw numbers: `{name}.json`.", ""]
    md.append(markdown_table(cols, [[f"{r[c]:.3g}" if isinstance(r[c], float) else r[c] for c in cols]
                                    for r in table_rows]))
    md += [""] + [f"- {n}" for n in notes]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    return RESULTS / f"{name}.md"


def _cpu() -> str:
    """CPU model, core count and whether bfloat16 is native: LM timings differ ~3x between such machines."""
    import os
    import platform

    from empathkit.models.backbones import native_bf16

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="ignore").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPU cores, bf16 {'native' if native_bf16() else 'not native'}"
