"""Serving benchmark over HTTP: streamed chat completions at concurrency 1, 8, 32 against sluicegate
and, in the same run, the peers present (llama.cpp's llama-server, llama-cpp-python) on the same GGUF.

    python bench/serving_bench.py [--levels 1,8,32] [--max-tokens 64] [--requests-per-slot 2] [--results]

Each level runs twice per server: first with NEW prompts (each starts with a tag no earlier request
to that server carried, so no prefix cache can serve more than the chat template's preamble), then
with the same prompts again, now in the server's cache. A bench whose levels reuse each other's
prompts would measure the cache, not the step.

Per server, level and prompt kind: TTFT p50/p99, inter-token latency p50/p99 (gaps between streamed
deltas, as a client sees them) and output tokens/s (all completion tokens / wall time), then the
ratios sluicegate / each peer. A PNG of throughput against concurrency goes to bench/out/ (and
bench/results/ with --results).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import (  # noqa: E402
    OUT_DIR,
    Server,
    StreamResult,
    client_limits,
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
NOTE_WORDS = ("bright cold window harbor lantern quiet stone market letter winter bridge forest signal morning "
              "paper copper rain shadow music ladder island voice orchard engine candle silver road dust "
              "promise north garden smoke kettle mirror whistle field thread ember").split()


def prompt_text(tag: str, index: int, words: int) -> str:
    """A request that starts with its own tag, so its tokens differ from every other prompt's from the
    first token of the user message on; then `words` seeded note words and the task."""
    rng = random.Random(f"{tag}-{index}")
    notes = " ".join(rng.choice(NOTE_WORDS) for _ in range(words))
    topic = TOPICS[index % len(TOPICS)]
    return f"Request {tag}-{index}. Notes: {notes}.\nWrite a short story about {topic} that uses these notes."


async def run_level(server: Server, concurrency: int, prompts: list[str], max_tokens: int) -> dict[str, Any]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(prompts)):
        queue.put_nowait(i)
    results: list[StreamResult] = []
    errors: list[str] = []

    async def worker(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"model": server.model, "max_tokens": max_tokens, "temperature": 0.8, "seed": i,
                    "ignore_eos": True, "messages": [{"role": "user", "content": prompts[i]}]}
            try:
                results.append(await stream_chat(http, server.url, body))
            except (httpx.TransportError, RuntimeError) as exc:  # counted in the table, not hidden
                errors.append(repr(exc))
                print(f"[bench] {server.name}: request {i} failed: {exc!r}", flush=True)

    async with httpx.AsyncClient(timeout=600, limits=client_limits(concurrency)) as http:
        await stream_chat(http, server.url, {"model": server.model, "max_tokens": 4,
                                             "messages": [{"role": "user", "content": "warm up"}]})
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    ttfts = [r.ttft for r in results]
    gaps = [g for r in results for g in r.gaps]
    tokens = sum(r.completion_tokens for r in results)
    prompt_tokens = sum(r.prompt_tokens for r in results)
    return {"server": server.name, "concurrency": concurrency, "requests": len(results), "errors": len(errors),
            "wall_s": wall,
            "output_tokens": tokens, "tok_per_s": tokens / wall,
            "cached_share": sum(r.cached_tokens for r in results) / prompt_tokens if prompt_tokens else float("nan"),
            "mean_prompt_tokens": prompt_tokens / len(results) if results else float("nan"),
            "ttft_p50": pct(ttfts, 50), "ttft_p99": pct(ttfts, 99),
            "itl_p50_ms": pct(gaps, 50) * 1000, "itl_p99_ms": pct(gaps, 99) * 1000}


def run_server(server: Server, levels: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per level: new prompts (tagged with this run and level), then the same prompts again, cached."""
    run_tag = f"{uuid.uuid4().hex[:8]}"
    rows = []
    for level in levels:
        n = max(4, args.requests_per_slot * level)
        prompts = [prompt_text(f"{run_tag}-L{level}", i, args.prompt_words) for i in range(n)]
        for kind in ("new", "cached"):
            print(f"[bench] {server.name}: concurrency {level}, {n} requests, {kind} prompts ...", flush=True)
            row = asyncio.run(run_level(server, level, prompts, args.max_tokens))
            rows.append({**row, "prompts": kind})
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for color, name in enumerate(dict.fromkeys(r["server"] for r in rows)):
        for kind, style in (("cached", "-"), ("new", "--")):
            points = [(r["concurrency"], r["tok_per_s"]) for r in rows if r["server"] == name and r["prompts"] == kind]
            ax.plot([p[0] for p in points], [p[1] for p in points], style, color=f"C{color}", marker="o",
                    label=f"{name}, {kind} prompts")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("output tokens / s")
    ax.set_title("Streaming chat throughput (same GGUF, same client)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def ratio_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """sluicegate / each peer, per level and prompt kind: throughput (higher is better for sluicegate)
    and latencies (lower is better for sluicegate)."""
    ours = {(r["concurrency"], r["prompts"]): r for r in rows if r["server"] == "sluicegate"}
    out = []
    for r in rows:
        mine = ours.get((r["concurrency"], r["prompts"]))
        if r["server"] != "sluicegate" and mine is not None:
            out.append([r["server"], r["concurrency"], r["prompts"], mine["tok_per_s"] / r["tok_per_s"],
                        mine["ttft_p50"] / r["ttft_p50"], mine["itl_p50_ms"] / r["itl_p50_ms"],
                        mine["itl_p99_ms"] / r["itl_p99_ms"]])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--requests-per-slot", type=int, default=2, help="requests per level = this x concurrency (min 4)")
    ap.add_argument("--prompt-words", type=int, default=150, help="seeded note words per prompt (~1.3 tokens each)")
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
            rows += run_server(server, levels, args)
    finally:
        for server in servers:
            server.stop()

    headers = ["server", "concurrency", "prompts", "requests", "failed", "output tok/s", "TTFT p50 s", "TTFT p99 s",
               "ITL p50 ms", "ITL p99 ms", "cached share", "mean prompt tok"]
    table = markdown_table(headers, [[r["server"], r["concurrency"], r["prompts"], r["requests"], r["errors"], r["tok_per_s"],
                                      r["ttft_p50"], r["ttft_p99"], r["itl_p50_ms"], r["itl_p99_ms"],
                                      r["cached_share"], r["mean_prompt_tokens"]] for r in rows])
    ratios = ratio_rows(rows)
    if ratios:
        table += "\n\nsluicegate / peer (tok/s: above 1 is sluicegate faster; latencies: below 1 is sluicegate faster)\n\n"
        table += markdown_table(["peer", "concurrency", "prompts", "output tok/s", "TTFT p50", "ITL p50", "ITL p99"],
                                ratios)
    notes = absent + [f"servers: {s.name} {' '.join(s.command)}" for s in servers if s.command]
    text = table + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
    print(text)
    if have_matplotlib():
        plot(rows, OUT_DIR / "serving.png")
        print(f"[bench] plot: {OUT_DIR / 'serving.png'}")
    else:
        print("[bench] matplotlib not installed: no plot")
    save("serving", {"rows": rows, "ratios": ratios, "notes": notes, "max_tokens": args.max_tokens,
                     "prompt_words": args.prompt_words}, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
