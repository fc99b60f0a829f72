"""Serving benchmark over HTTP: streamed chat completions at concurrency 1, 8, 32 against sluicegate
and, in the same run, the peers present (llama-server, llama-cpp-python) on the same GGUF file.

    python bench/serving_bench.py [--levels 1,8,32] [--max-tokens 64] [--requests-per-slot 2] [--results]

Per server and level: TTFT p50/p99, inter-token latency p50/p99 (gaps between streamed deltas, as a
client sees them) and output tokens/s (all completion tokens / wall time). Ratios vs each peer are
printed; a PNG of throughput against concurrency goes to bench/out/ (and bench/results/ with --results).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import (  # noqa: E402
    OUT_DIR,
    Server,
    StreamResult,
    default_gguf,
    have_matplotlib,
    markdown_table,
    pct,
    save,
    start_peers,
    start_sluicegate,
    stream_chat,
)

TOPICS = ["a river", "a lighthouse", "the moon", "a mountain village", "an old clock", "a train at night",
          "a garden", "the sea", "a library", "a city in the rain", "a fox", "a violin"]


async def run_level(server: Server, concurrency: int, num_requests: int, max_tokens: int) -> dict[str, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(num_requests):
        queue.put_nowait(i)
    results: list[StreamResult] = []
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"model": server.model, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
                    "ignore_eos": True,
                    "messages": [{"role": "user", "content": f"Write a short story about {TOPICS[i % len(TOPICS)]}."}]}
            results.append(await stream_chat(http, server.url, body))

    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        await stream_chat(http, server.url, {"model": server.model, "max_tokens": 4,
                                             "messages": [{"role": "user", "content": "warm up"}]})
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ttfts = [r.ttft for r in results]
    gaps = [g for r in results for g in r.gaps]
    tokens = sum(r.completion_tokens for r in results)
    return {"server": server.name, "concurrency": concurrency, "requests": len(results), "wall_s": wall,
            "output_tokens": tokens, "tok_per_s": tokens / wall,
            "ttft_p50": pct(ttfts, 50), "ttft_p99": pct(ttfts, 99),
            "itl_p50_ms": pct(gaps, 50) * 1000, "itl_p99_ms": pct(gaps, 99) * 1000}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(r["server"] for r in rows):
        points = [(r["concurrency"], r["tok_per_s"]) for r in rows if r["server"] == name]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("output tokens / s")
    ax.set_title("Streaming chat throughput (same GGUF, same client)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    ours = {r["concurrency"]: r for r in rows if r["server"] == "sluicegate"}
    for r in rows:
        if r["server"] != "sluicegate" and r["concurrency"] in ours:
            ratio = ours[r["concurrency"]]["tok_per_s"] / r["tok_per_s"]
            lines.append(f"concurrency {r['concurrency']}: sluicegate / {r['server']} output tok/s = {ratio:.2f}x")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--requests-per-slot", type=int, default=2, help="requests per level = this x concurrency (min 4)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for the peers")
    ap.add_argument("--url", default=None, help="benchmark an already running sluicegate instead of starting one")
    ap.add_argument("--results", action="store_true", help="also copy table, JSON and PNG into bench/results/")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    OUT_DIR.mkdir(parents=True, exist_ok=True)

    servers: list[Server] = []
    if args.url:
        model = httpx.get(f"{args.url}/v1/models").json()["data"][0]["id"]
        servers.append(Server("sluicegate", args.url, None, model))
    else:
        servers.append(start_sluicegate(["--max-num-seqs", str(max(levels) * 2)]))
    peers, absent = start_peers(default_gguf(), slots=max(levels), threads=args.threads)
    servers += peers
    rows: list[dict[str, Any]] = []
    try:
        for server in servers:
            for level in levels:
                n = max(4, args.requests_per_slot * level)
                print(f"[bench] {server.name}: concurrency {level}, {n} requests ...", flush=True)
                rows.append(asyncio.run(run_level(server, level, n, args.max_tokens)))
    finally:
        for server in servers:
            server.stop()

    headers = ["server", "concurrency", "requests", "output tok/s", "TTFT p50 s", "TTFT p99 s",
               "ITL p50 ms", "ITL p99 ms"]
    table = markdown_table(headers, [[r["server"], r["concurrency"], r["requests"], r["tok_per_s"], r["ttft_p50"],
                                      r["ttft_p99"], r["itl_p50_ms"], r["itl_p99_ms"]] for r in rows])
    notes = absent + ratios(rows)
    text = table + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
    print(text)
    if have_matplotlib():
        plot(rows, OUT_DIR / "serving.png")
        print(f"[bench] plot: {OUT_DIR / 'serving.png'}")
    else:
        print("[bench] matplotlib not installed: no plot")
    save("serving", {"rows": rows, "notes": notes, "max_tokens": args.max_tokens}, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
