"""Pinned prefixes under cache pressure: an agent's shared prompt with prompt_cache_retention="24h"
vs without, while other traffic churns through a KV pool too small to keep everything.

    python bench/pinned_prefix_bench.py [--agents 3] [--turns 4] [--kv-cache-memory-gb 0.05] [--results]

Each round: every agent takes a turn (the shared system prompt, then its own conversation), then
two requests with long unique prompts (no retention) pass through, each needing most of the pool.
Without a pin, LRU evicts the agents' prefix between rounds; with "24h" it stays in the protected
tier. Two servers in the same run, same workload; per server: later turns' cached share of the
shared prefix, how many later turns recomputed it, TTFT p50 / p99 of later turns.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import markdown_table, pct, save, start_sluicegate, stream_chat  # noqa: E402

WORDS = ("river harbour ticket museum station bridge market garden castle valley coast island forest "
         "mountain village festival concert gallery library cathedral").split()


def text(rng: random.Random, num_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(num_words))


def system_prompt(num_words: int) -> str:
    return "You are a travel agent. Guidelines: " + text(random.Random(0), num_words)


async def workload(url: str, model: str, args: argparse.Namespace, retention: str | None) -> list[dict[str, Any]]:
    rng = random.Random(1)
    system = system_prompt(args.system_words)
    history: list[list[dict[str, str]]] = [[] for _ in range(args.agents)]
    turns = []
    async with httpx.AsyncClient(timeout=600) as http:
        for round_index in range(args.turns):
            for agent in range(args.agents):
                history[agent].append({"role": "user", "content": f"Agent {agent}, step {round_index}: "
                                       + text(rng, 12)})
                body: dict[str, Any] = {"model": model, "max_tokens": 8, "temperature": 0,
                                        "messages": [{"role": "system", "content": system}, *history[agent]],
                                        "prompt_cache_key": "travel-agents"}
                if retention:
                    body["prompt_cache_retention"] = retention
                r = await stream_chat(http, url, body)
                history[agent].append({"role": "assistant", "content": r.content or "ok"})
                turns.append({"round": round_index, "agent": agent, "ttft_s": r.ttft,
                              "prompt_tokens": r.prompt_tokens, "cached_tokens": r.cached_tokens})
            for _ in range(2):  # other traffic: long unique prompts that need most of the pool
                churn = {"model": model, "max_tokens": 1, "messages": [
                    {"role": "user", "content": text(rng, args.churn_words)}]}
                await stream_chat(http, url, churn)
    return turns


def prefix_tokens(url: str, model: str, args: argparse.Namespace) -> int:
    """Tokens of the shared system prompt as rendered (the prompt of a turn without user text)."""
    body = {"model": model, "max_tokens": 1, "messages": [{"role": "system", "content": system_prompt(args.system_words)}]}
    return int(httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()["usage"]["prompt_tokens"])


def summary(name: str, turns: list[dict[str, Any]], prefix: int, block: int) -> list[Any]:
    later = [t for t in turns if t["round"] > 0]
    full_prefix = prefix // block * block  # what the cache can hold of it: whole blocks
    recomputed = sum(t["cached_tokens"] < full_prefix for t in later)
    share = sum(t["cached_tokens"] for t in later) / sum(t["prompt_tokens"] for t in later)
    ttft = [t["ttft_s"] for t in later]
    return [name, len(later), share, recomputed, pct(ttft, 50), pct(ttft, 99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--system-words", type=int, default=300)
    parser.add_argument("--churn-words", type=int, default=1300)
    parser.add_argument("--kv-cache-memory-gb", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--results", action="store_true", help="copy the table into bench/results/")
    args = parser.parse_args()
    rows, raw = [], {}
    for name, retention in (("no retention (LRU)", None), ('prompt_cache_retention "24h"', "24h")):
        server = start_sluicegate(["--num-threads", str(args.threads),
                                   "--kv-cache-memory-gb", str(args.kv_cache_memory_gb)])
        try:
            prefix = prefix_tokens(server.url, server.model, args)
            raw[name] = asyncio.run(workload(server.url, server.model, args, retention))
            rows.append(summary(name, raw[name], prefix, block=16))
        finally:
            server.stop()
    headers = ["agents' requests", "later turns", "cached share", "later turns that recomputed the prefix",
               "TTFT p50 s", "TTFT p99 s"]
    table = markdown_table(headers, rows)
    table += (f"\n\n{args.agents} agents x {args.turns} turns, shared prefix {prefix} tokens, two "
              f"{args.churn_words}-word requests between rounds, KV pool {args.kv_cache_memory_gb} GB.")
    print(table)
    save("pinned_prefix", raw, table, args.results)


if __name__ == "__main__":
    main()
