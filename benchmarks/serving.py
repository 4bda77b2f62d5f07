"""Serving under load: the OpenAI-compatible server (real SmolLM2 prompt baseline) in one process, bounded load from
this process on 127.0.0.1; micro-batching vs one-request-at-a-time; crisis-set recall / false-positive rate.

For each server configuration a fresh server process is started (``--serve``), warmed up with 2 requests, then
driven by 1, 4 and 16 concurrent clients (each client sends its next request as soon as the previous one is answered;
a fixed number of requests per phase). Reported: throughput (requests/s, generated tokens/s), p50 / p99 latency,
the count of 5xx answers (must be 0), the server's RSS before / after the load, and the mean micro-batch size
(from /health). Greedy decoding, ``max_tokens`` 32, written prompts (no dataset text).

    python benchmarks/serving.py [--n1 6] [--n4 12] [--n16 32] [--n-unbatched 32] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402
from empathkit.reports.tables import markdown_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL_ID = "smollm2-prompt"
PROMPTS = [
    "I finally finished painting the living room and it looks amazing.",
    "My sister forgot my birthday again this year.",
    "I have a job interview tomorrow and I can't stop worrying about it.",
    "We adopted a puppy last weekend and she already chewed my shoes.",
    "My car broke down on the highway this morning.",
    "I ran my first 10k today!",
    "My best friend is moving to another country next month.",
    "I got a parking ticket even though I paid for the meter.",
    "Our team won the local quiz night, I'm still buzzing.",
    "I've been feeling lonely since my roommate moved out.",
    "My grandmother taught me her soup recipe before she passed away, and I made it today.",
    "The neighbours had a loud party until 4am and I have an exam today.",
    "I accidentally sent a message about my boss to my boss.",
    "After months of saving I finally booked a trip to Japan.",
    "My son said his first word today, it was 'dog'.",
    "I think my coworker is taking credit for my ideas in meetings.",
]


# -- the server process ----------------------------------------------------------------------------------------------

def serve(port: int, max_batch: int, max_new_tokens: int, threads: int) -> None:
    import torch

    from empathkit.methods.prompt import load
    from empathkit.serving.emotion import EmotionDetector
    from empathkit.serving.server import ServerSettings, create_app, run

    if threads:
        torch.set_num_threads(threads)
    gen = load({"template": "structured-v1"})
    gen.default_settings = gen.default_settings.model_copy(update={"max_new_tokens": max_new_tokens})
    app = create_app(gen, ServerSettings(model_id=MODEL_ID, max_batch=max_batch, max_wait_ms=20, queue_size=64,
                                         timeout=900, max_tokens_limit=256),
                     emotion_detector=EmotionDetector.load())
    run(app, "127.0.0.1", port, log_level="warning")


# -- the load driver -----------------------------------------------------------------------------------------------

def start_server(max_batch: int, max_new_tokens: int, threads: int) -> tuple[subprocess.Popen, str]:
    from empathkit.serving.server import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--port", str(port), "--max-batch", str(max_batch),
                             "--max-new-tokens", str(max_new_tokens), "--threads", str(threads)], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not become healthy in 300 s")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status")
    if status.is_file():  # Linux: no extra dependency
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    import psutil  # other systems

    return psutil.Process(pid).memory_info().rss / 2**20


def request_body(i: int, max_tokens: int, stream: bool = False) -> dict:
    return {"model": MODEL_ID, "messages": [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            "max_tokens": max_tokens, "temperature": 0, "stream": stream}


def load_phase(url: str, clients: int, n: int, max_tokens: int) -> dict:
    lock = threading.Lock()
    counter = iter(range(n))
    lat: list[float] = []
    codes: dict[int, int] = {}
    tokens = [0]
    before = httpx.get(url + "/health").json()["stats"]

    def client():
        with httpx.Client(timeout=900) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                r = c.post(url + "/v1/chat/completions", json=request_body(i, max_tokens))
                dt = time.perf_counter() - t0
                with lock:
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        lat.append(dt)
                        tokens[0] += r.json()["usage"]["completion_tokens"]

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    after = httpx.get(url + "/health").json()["stats"]
    lat.sort()
    p99 = lat[min(len(lat) - 1, max(0, round(0.99 * len(lat)) - 1))] if lat else float("nan")
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "requests": n, "seconds": wall, "req_per_s": len(lat) / wall,
            "tokens_per_s": tokens[0] / wall, "p50_s": statistics.median(lat) if lat else float("nan"), "p99_s": p99,
            "n_5xx": sum(v for k, v in codes.items() if k >= 500),
            "n_4xx": sum(v for k, v in codes.items() if 400 <= k < 500),
            "mean_batch": (after["requests"] - before["requests"]) / batches if batches else float("nan"),
            "status_codes": codes}


def stream_ttft(url: str, n: int, max_tokens: int) -> dict:
    """Single-client token streaming: time to the first content delta vs the whole reply."""
    firsts, totals = [], []
    with httpx.Client(timeout=900) as c:
        for i in range(n):
            t0 = time.perf_counter()
            first = None
            with c.stream("POST", url + "/v1/chat/completions", json=request_body(i, max_tokens, stream=True)) as r:
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        ch = json.loads(line[6:])
                        if first is None and ch.get("choices") and ch["choices"][0]["delta"].get("content"):
                            first = time.perf_counter() - t0
            totals.append(time.perf_counter() - t0)
            firsts.append(first if first is not None else totals[-1])
    return {"requests": n, "ttft_p50_s": statistics.median(firsts), "total_p50_s": statistics.median(totals)}


def run_config(name: str, max_batch: int, phases: list[tuple[int, int]], max_new: int, threads: int,
               ttft: int = 0) -> dict:
    proc, url = start_server(max_batch, max_new, threads)
    try:
        for i in range(2):  # warm-up
            httpx.post(url + "/v1/chat/completions", json=request_body(i, max_new), timeout=900).raise_for_status()
        out = {"config": name, "max_batch": max_batch, "rss_before_mb": rss_mb(proc.pid), "phases": []}
        for clients, n in phases:
            row = load_phase(url, clients, n, max_new)
            print(name, json.dumps({k: v for k, v in row.items() if k != "status_codes"}), flush=True)
            out["phases"].append(row)
        if ttft:
            out["streaming"] = stream_ttft(url, ttft, max_new)
            print(name, "streaming", out["streaming"], flush=True)
        out["rss_after_mb"] = rss_mb(proc.pid)
        out["health"] = httpx.get(url + "/health").json()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def crisis_metrics() -> dict:
    from empathkit.serving.safety import SafetyLayer

    rows = [json.loads(x) for x in (REPO / "tests/serving/crisis_set.jsonl").read_text().splitlines() if x.strip()]
    layer = SafetyLayer()
    t0 = time.perf_counter()
    res = layer.check_texts([r["text"] for r in rows])
    dt = time.perf_counter() - t0
    pos = [(r, x) for r, x in zip(rows, res) if r["crisis"]]
    neg = [(r, x) for r, x in zip(rows, res) if not r["crisis"]]
    per_cat = {}
    for cat in sorted({r["category"] for r, _ in pos}):
        items = [x for r, x in pos if r["category"] == cat]
        per_cat[cat] = {"n": len(items), "recall": sum(x.flagged for x in items) / len(items)}
    return {"n_crisis": len(pos), "n_ordinary": len(neg), "recall": sum(x.flagged for _, x in pos) / len(pos),
            "false_positive_rate": sum(x.flagged for _, x in neg) / len(neg),
            "category_accuracy": sum(x.category == r["category"] for r, x in pos if x.flagged) /
            max(1, sum(x.flagged for _, x in pos)),
            "per_category": per_cat, "checks_per_s": len(rows) / dt,
            "missed": [r["text"] for r, x in pos if not x.flagged],
            "false_alarms": [r["text"] for r, x in neg if x.flagged]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--n1", type=int, default=6)
    ap.add_argument("--n4", type=int, default=12)
    ap.add_argument("--n16", type=int, default=32)
    ap.add_argument("--n-unbatched", type=int, default=32)
    ap.add_argument("--n-stream", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in the server (0 = torch default); "
                    "1 avoids OpenMP oversubscription when other jobs share the cores")
    a = ap.parse_args()
    if a.serve:
        return serve(a.port, a.max_batch, a.max_new_tokens, a.threads)

    t_start, load_start = time.time(), os.getloadavg()
    crisis = crisis_metrics()
    print("crisis set:", {k: v for k, v in crisis.items() if k not in ("missed", "false_alarms")}, flush=True)
    batched = run_config("micro-batching", a.max_batch, [(1, a.n1), (4, a.n4), (16, a.n16)], a.max_new_tokens,
                         a.threads, ttft=a.n_stream)
    single = run_config("one-at-a-time", 1, [(16, a.n_unbatched)], a.max_new_tokens, a.threads)
    b16 = next(p for p in batched["phases"] if p["clients"] == 16)
    s16 = single["phases"][0]
    payload = {"model": "smollm2-135m-instruct (prompt baseline, structured-v1)", "max_new_tokens": a.max_new_tokens,
               "decoding": "greedy", "max_wait_ms": 20, "torch_threads": a.threads or "default",
               "configs": [batched, single],
               "batching_speedup_16_clients": b16["req_per_s"] / s16["req_per_s"],
               "batching_wins": b16["req_per_s"] > s16["req_per_s"],
               "total_5xx": sum(p["n_5xx"] for c in (batched, single) for p in c["phases"]),
               "crisis_set": crisis, "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
               "wall_seconds": time.time() - t_start}
    rows = []
    for c in (batched, single):
        for p in c["phases"]:
            rows.append({"config": c["config"], "max_batch": c["max_batch"], "clients": p["clients"],
                         "requests": p["requests"], "req/s": p["req_per_s"], "tok/s": p["tokens_per_s"],
                         "p50 s": p["p50_s"], "p99 s": p["p99_s"], "mean batch": p["mean_batch"],
                         "5xx": p["n_5xx"], "RSS before MB": c["rss_before_mb"], "RSS after MB": c["rss_after_mb"]})
    st = batched.get("streaming", {})
    notes = [
        f"Micro-batching vs one-at-a-time at 16 clients: {payload['batching_speedup_16_clients']:.2f}x throughput "
        f"({'batching wins' if payload['batching_wins'] else 'BATCHING DID NOT WIN'}); 5xx answers in total: "
        f"{payload['total_5xx']}.",
        "p99 over a few dozen requests is close to the maximum; quote p50 and the same-run ratio.",
        f"Token streaming, 1 client: time to first token p50 {st.get('ttft_p50_s', float('nan')):.2f} s vs whole "
        f"reply p50 {st.get('total_p50_s', float('nan')):.2f} s.",
        f"Load average (1/5/15 min) at start {tuple(round(x, 1) for x in load_start)}, end "
        f"{tuple(round(x, 1) for x in payload['loadavg_end'])}: other jobs shared the 2 cores.",
        f"Emotion classifier in the server: {batched['health']['emotion_classifier']}; torch threads in the server: "
        f"{a.threads or 'default'}.",
    ]
    md = write_results("serving", payload, rows, "Serving under load (SmolLM2-135M prompt baseline, CPU)", notes)
    cat_table = markdown_table(["category", "n", "recall"],
                               [[k, v["n"], f"{v['recall']:.2f}"] for k, v in crisis["per_category"].items()])
    md.write_text(md.read_text() + f"""
## Crisis safety layer on the written set (`tests/serving/crisis_set.jsonl`)

{crisis['n_crisis']} crisis and {crisis['n_ordinary']} ordinary emotional messages (sadness, grief, non-crisis anger,
idioms, negations, topic mentions), written for this project. Rules and set were written by the same people, so these
numbers are an optimistic estimate, not a measure on real traffic.

- recall: **{crisis['recall']:.3f}**, false-positive rate: **{crisis['false_positive_rate']:.3f}**,
  category accuracy on flagged crisis messages: {crisis['category_accuracy']:.3f}
- speed: {crisis['checks_per_s']:.0f} checks/s (rules only)
- missed: {crisis['missed'] or 'none'}; false alarms: {crisis['false_alarms'] or 'none'}

{cat_table}
""")
    print(md.read_text())


if __name__ == "__main__":
    main()
