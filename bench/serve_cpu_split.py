"""Where a served stream's CPU goes: per-thread CPU time of `sluicegate serve` (step loop, its
OpenMP workers, the event loop) and of this benchmark's own client, per output token.

    python bench/serve_cpu_split.py [--threads 2] [--tokens 512] [--server-args "..."]

Read from /proc (Linux) before and after one greedy streamed answer of --tokens tokens. On a
machine with as many cores as torch threads, whatever the event loop and the client take comes out
of the engine's own threads; this shows how much.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import start_sluicegate, stream_chat  # noqa: E402


def thread_cpu_s(pid: int) -> dict[tuple[str, str], float]:
    """(thread id, name) -> user + system CPU seconds so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


async def measure(args: argparse.Namespace) -> None:
    server = start_sluicegate(["--num-threads", str(args.threads), *args.server_args.split()])
    try:
        assert server.proc is not None
        pid = server.proc.pid
        body = {"model": server.model, "messages": [{"role": "user", "content": "Write a long story."}],
                "max_tokens": args.tokens, "temperature": 0, "ignore_eos": True}
        async with httpx.AsyncClient(timeout=600) as http:
            await stream_chat(http, server.url, {**body, "max_tokens": 16})  # warm-up
            before, client0, wall0 = thread_cpu_s(pid), time.process_time(), time.perf_counter()
            await stream_chat(http, server.url, body)
            after, client1, wall1 = thread_cpu_s(pid), time.process_time(), time.perf_counter()
    finally:
        server.stop()
    per_token = 1000 / args.tokens
    print(f"{args.threads} torch thread(s), {args.tokens} tokens, ms per token\n")
    print("| part | ms per token |\n|---|---|")
    print(f"| wall time | {(wall1 - wall0) * per_token:.2f} |")
    used = sorted(((after[k] - before.get(k, 0.0)) * per_token, k) for k in after)
    for ms, (tid, name) in reversed(used):
        if ms >= 0.01:
            print(f"| server thread {tid} ({name}) | {ms:.2f} |")
    print(f"| this benchmark's client (httpx, SSE parsing) | {(client1 - client0) * per_token:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--server-args", default="")
    asyncio.run(measure(ap.parse_args()))


if __name__ == "__main__":
    main()
