"""Helpers shared by benchmark scripts: write JSON + a Markdown table into benchmarks/results/."""

from __future__ import annotations

import json
import time
from pathlib import Path

from empathkit.runs import library_versions

RESULTS = Path(__file__).resolve().parent / "results"


def write_results(name: str, payload: dict, table_rows: list[dict], title: str, notes: list[str] = ()) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "versions": library_versions(), **payload}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    cols = list(table_rows[0]) if table_rows else []
    md = [f"# {title}", "", f"Run {payload['date']} on this machine (2 CPU cores). Raw numbers: `{name}.json`.", ""]
    md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in table_rows:
        md.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    md += [""] + [f"- {n}" for n in notes]
    (RESULTS / f"{name}.md").write_text("\n".join(md) + "\n")
    return RESULTS / f"{name}.md"
