"""Replicas: the agent workload on 2 Ray Serve replicas, sluicegate's prefix/session router against
Ray Serve's default (power of two choices), in one run on one local Ray.

    python bench/replica_bench.py [--agents 16] [--turns 4] [--replicas 2] [--threads 1] [--results]

The workload is bench/agent_bench.py's (every agent shares the system prompt and 10 tools; each
turn extends the agent's conversation) without session keys, so the router keys requests by
their prompt's blocks. The shared opening is most of each prompt and ends up cached on every
replica whatever the router; --own-openings gives each agent its own first line, so a later turn
is cached only where its conversation ran before. Per router: the share of later turns' prompt tokens served from the prefix
cache, and TTFT p50/p99 of first and later turns. Each router gets freshly started replicas (cold
caches). Needs the 'ray' extra.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.agent_bench import run_server, summarize  # noqa: E402
from bench.serving_common import OUT_DIR, Server, free_port, markdown_table, save  # noqa: E402

ROUTER_NAMES = {"prefix": "sluicegate prefix/session router", "pow2": "Ray Serve default (power of two)"}


def run_router(settings: Any, router: str, agents: int, turns: int, max_tokens: int,
               own_opening: bool) -> list[dict[str, Any]]:
    import httpx
    from ray import serve

    from sluicegate.gateway.cluster.launch import APP_NAME, run_application

    t0 = time.perf_counter()
    run_application(settings, router)
    url = f"http://127.0.0.1:{settings.port}"
    model = httpx.get(f"{url}/v1/models", timeout=60).json()["data"][0]["id"]
    print(f"[bench] {router}: replicas up in {time.perf_counter() - t0:.0f}s; "
          f"{agents} agents x {turns} turns ...", flush=True)
    try:
        return asyncio.run(run_server(Server(router, url, None, model), agents, turns, max_tokens, own_opening))
    finally:
        serve.delete(APP_NAME)  # the next router starts on fresh replicas (cold caches)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=16)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    ap.add_argument("--imbalance", type=int, default=4, help="--route-imbalance of the prefix/session router")
    ap.add_argument("--routers", default="prefix,pow2", help="comma-separated: prefix, pow2")
    ap.add_argument("--own-openings", action="store_true",
                    help="each agent's system prompt starts with its own line: agents share no cached block, "
                         "so only routing keeps a conversation's cache (by default they share ~1,250 tokens)")
    ap.add_argument("--results", action="store_true", help="also copy table and JSON into bench/results/")
    args = ap.parse_args()

    import ray
    from ray import serve

    from sluicegate.gateway.cli import parse_args, settings_from_args
    from sluicegate.gateway.cluster.launch import start_ray

    flags = ["serve", "--replicas", str(args.replicas), "--num-threads", str(args.threads),
             "--port", str(free_port()), "--route-imbalance", str(args.imbalance), "--log-level", "warning",
             "--uvicorn-log-level", "warning"]
    settings = settings_from_args(parse_args(flags))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    start_ray(settings)
    records: dict[str, list[dict[str, Any]]] = {}
    try:
        for router in args.routers.split(","):
            records[router] = run_router(settings, router, args.agents, args.turns, args.max_tokens,
                                         args.own_openings)
    finally:
        serve.shutdown()
        ray.shutdown()
    rows = [summarize(ROUTER_NAMES[name], recs) for name, recs in records.items()]
    headers = ["router", "turns", "cached share (later turns)", "TTFT p50 s (later)", "TTFT p99 s (later)",
               "TTFT p50 s (turn 1)", "TTFT p99 s (turn 1)", "mean prompt tok"]
    table = markdown_table(headers, [[r["server"], r["turns"], r["cached_share_later"], r["ttft_later_p50"],
                                      r["ttft_later_p99"], r["ttft_first_p50"], r["ttft_first_p99"],
                                      r["mean_prompt_tokens"]] for r in rows])
    note = (f"- {args.agents} agents x {args.turns} turns, {args.replicas} replicas x {args.threads} torch thread(s), "
            f"max_tokens {args.max_tokens}, route_imbalance {args.imbalance}, "
            f"{'own' if args.own_openings else 'shared'} system prompt openings; command: {' '.join(sys.argv)}")
    text = f"{table}\n\n{note}"
    print(text)
    save("replica", {"rows": rows, "records": records, "args": vars(args)}, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
