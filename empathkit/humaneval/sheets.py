"""Export blinded, randomised annotation sheets (CSV) and a static HTML form.

Layout written to ``out_dir``:

- ``annotator_<k>.csv`` — one sheet per annotator, items in that annotator's own random order. Columns:
  ``item``, ``context``, then ``response_a``/``response_b`` (A/B mode) or ``response`` (Likert mode), then one
  empty column per aspect to fill: ``A`` / ``B`` / ``tie`` in A/B mode, an integer 1–5 in Likert mode.
- ``form.html`` — a self-contained page (no server, no network) showing the same items; the annotator types a name,
  fills the choices and downloads a CSV with exactly the sheet's columns.
- ``key.json`` — **do not give to annotators**: item → example id, emotion and which system is A / B (or which
  system wrote the response), plus the sampling settings.

Blinding: system names never appear in the sheets; A/B sides are drawn at random per item; Likert items of all
systems are mixed. Sampling: ``n`` examples that every system has, drawn round-robin over emotions (seeded), so the
sample is stratified by emotion.
"""

from __future__ import annotations

import csv
import html
import itertools
import json
import random
from pathlib import Path
from typing import Any, Mapping, Sequence

from empathkit.errors import ConfigError

ASPECTS = ("empathy", "relevance", "fluency")


def stratified_sample(ids_by_emotion: Mapping[str, Sequence[str]], n: int, seed: int = 0) -> list[str]:
    """Round-robin over emotions (each emotion's ids shuffled with ``seed``) until ``n`` ids are drawn."""
    rng = random.Random(seed)
    pools = {e: rng.sample(list(v), len(v)) for e, v in sorted(ids_by_emotion.items())}
    out: list[str] = []
    k = 0
    while len(out) < n and any(k < len(v) for v in pools.values()):
        for e in sorted(pools):
            if k < len(pools[e]) and len(out) < n:
                out.append(pools[e][k])
        k += 1
    return out


def _common(systems: Mapping[str, Sequence[Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    if len(systems) < 1:
        raise ConfigError("give at least one system")
    by = {name: {r.id: r for r in recs} for name, recs in systems.items()}
    first = next(iter(systems.values()))
    common = [r.id for r in first if all(r.id in b for b in by.values())]
    if not common:
        raise ConfigError("the systems share no example id: cannot build comparable items")
    return by, common


def export_sheets(systems: Mapping[str, Sequence[Any]], out_dir: str | Path, mode: str = "ab", n: int = 64,
                  annotators: int = 3, aspects: Sequence[str] = ASPECTS, seed: int = 0,
                  pairs: Sequence[tuple[str, str]] | None = None, max_context_turns: int = 4) -> Path:
    """Write the sheets, form and key; returns ``out_dir``. ``systems``: name → records
    (:class:`empathkit.evaluation.Record`). A/B mode compares every pair of systems (or ``pairs``)."""
    if mode not in ("ab", "likert"):
        raise ConfigError(f"mode must be ab | likert, got {mode!r}")
    if mode == "ab" and len(systems) < 2:
        raise ConfigError("A/B sheets need at least two systems")
    aspects = [a.strip() for a in aspects if a.strip()]
    if not aspects:
        raise ConfigError("give at least one aspect")
    by, common = _common(systems)
    first = {r.id: r for r in next(iter(systems.values()))}
    ids_by_emo: dict[str, list[str]] = {}
    for i in common:
        ids_by_emo.setdefault(first[i].emotion or "(none)", []).append(i)
    sample = stratified_sample(ids_by_emo, n, seed)
    rng = random.Random(seed + 1)
    items, key = [], {}
    names = list(systems)
    comparisons = list(pairs) if pairs else list(itertools.combinations(names, 2))
    for p in comparisons:
        for s in p:
            if s not in systems:
                raise ConfigError(f"pair names unknown system {s!r}; systems: {', '.join(names)}")
    units = [(ex, p) for ex in sample for p in comparisons] if mode == "ab" else [(ex, s) for ex in sample for s in names]
    rng.shuffle(units)
    for k, (ex, what) in enumerate(units, start=1):
        item = f"item-{k:04d}"
        rec = first[ex]
        ctx = " / ".join(list(rec.context)[-max_context_turns:])
        if mode == "ab":
            a, b = what if rng.random() < 0.5 else (what[1], what[0])
            items.append({"item": item, "context": ctx, "response_a": by[a][ex].hypothesis,
                          "response_b": by[b][ex].hypothesis})
            key[item] = {"id": ex, "emotion": rec.emotion, "A": a, "B": b}
        else:
            items.append({"item": item, "context": ctx, "response": by[what][ex].hypothesis})
            key[item] = {"id": ex, "emotion": rec.emotion, "system": what}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text_cols = ["item", "context"] + (["response_a", "response_b"] if mode == "ab" else ["response"])
    for a in range(1, annotators + 1):
        order = random.Random(seed * 1000 + a).sample(items, len(items))
        with (out / f"annotator_{a}.csv").open("w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=text_cols + aspects)
            w.writeheader()
            for it in order:
                w.writerow({**it, **{asp: "" for asp in aspects}})
    meta = {"mode": mode, "aspects": aspects, "n_examples": len(sample), "annotators": annotators, "seed": seed,
            "systems": names, "pairs": [list(p) for p in comparisons] if mode == "ab" else None,
            "scale": "A | B | tie" if mode == "ab" else "1-5"}
    (out / "key.json").write_text(json.dumps({"meta": meta, "items": key}, indent=2, ensure_ascii=False), encoding="utf-8")
    (out / "form.html").write_text(_form(items, text_cols, aspects, mode), encoding="utf-8")
    (out / "README.md").write_text(
        f"# Human evaluation ({'A/B' if mode == 'ab' else 'Likert 1-5'})\n\n"
        f"Give each annotator their `annotator_<k>.csv` (or `form.html`, which downloads the same CSV). "
        f"Keep `key.json` hidden. Fill every aspect column ({', '.join(aspects)}) with "
        f"{'A, B or tie' if mode == 'ab' else 'an integer from 1 (poor) to 5 (excellent)'}.\n\n"
        f"Aggregate: `empathkit humaneval aggregate {out}/annotator_*.csv --key {out}/key.json`\n", encoding="utf-8")
    return out


def _form(items: list[dict], text_cols: list[str], aspects: list[str], mode: str) -> str:
    """A static page: items rendered server-side, a few lines of JS to collect choices and download a CSV."""
    choices = ["A", "B", "tie"] if mode == "ab" else ["1", "2", "3", "4", "5"]
    blocks = []
    for it in items:
        resp = (f"<p><b>A:</b> {html.escape(it['response_a'])}</p><p><b>B:</b> {html.escape(it['response_b'])}</p>"
                if mode == "ab" else f"<p><b>Response:</b> {html.escape(it['response'])}</p>")
        qs = "".join(
            f"<div class='q'>{html.escape(a)}: " + "".join(
                f"<label><input type='radio' name='{html.escape(it['item'])}|{html.escape(a)}' value='{c}'>{c}</label> "
                for c in choices) + "</div>" for a in aspects)
        blocks.append(f"<section data-item='{html.escape(it['item'])}'><h3>{html.escape(it['item'])}</h3>"
                      f"<p class='ctx'><b>Dialogue:</b> {html.escape(it['context'])}</p>{resp}{qs}</section>")
    data = json.dumps(items, ensure_ascii=False).replace("</", "<\\/")
    cols = json.dumps(text_cols + aspects)
    asp = json.dumps(aspects)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>empathkit human evaluation</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto}}section{{border:1px solid #ccc;padding:.5em 1em;
margin:1em 0}}.ctx{{color:#555}}.q{{margin:.3em 0}}label{{margin-right:.8em}}</style></head><body>
<h1>Which response is better?</h1>
<p>{'Compare responses A and B for each aspect (A, B or tie).' if mode == 'ab' else 'Rate the response from 1 (poor) to 5 (excellent) on each aspect.'}
System names are hidden. When done, type your name and download your answers.</p>
{''.join(blocks)}
<p>Your name: <input id="who"> <button onclick="save()">Download CSV</button> <span id="msg"></span></p>
<script>
const ITEMS = {data}; const COLS = {cols}; const ASPECTS = {asp};
function q(v) {{ v = String(v); return /[",\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; }}
function save() {{
  let missing = 0; const rows = [COLS.join(",")];
  for (const it of ITEMS) {{
    const row = COLS.map(c => it[c] !== undefined ? it[c] : "");
    ASPECTS.forEach((a, j) => {{
      const el = document.querySelector(`input[name="${{it.item}}|${{a}}"]:checked`);
      if (!el) missing++; row[COLS.indexOf(a)] = el ? el.value : "";
    }});
    rows.push(row.map(q).join(","));
  }}
  const who = (document.getElementById("who").value || "annotator").replace(/[^A-Za-z0-9_-]/g, "_");
  const blob = new Blob([rows.join("\\n") + "\\n"], {{type: "text/csv"}});
  const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = who + ".csv"; a.click();
  document.getElementById("msg").textContent = missing ? missing + " answer(s) left empty" : "saved";
}}
</script></body></html>
"""
