"""Agent workload: several agents interleaved, each a multi-turn tool-using conversation with the same
system prompt and 10 tools; every turn appends the last tool call and its result, as agent loops do.

    python bench/agent_bench.py [--agents 8] [--turns 4] [--max-tokens 48] [--results]

Per server: TTFT p50/p99 of first turns and of later turns, and the share of prompt tokens served
from the prefix cache (usage.prompt_tokens_details.cached_tokens; llama-server reports its own
cache reuse the same way). Peers run with the same client when present. PNG: TTFT distribution.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shlex
import sys
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

SYSTEM = ("You are a travel-planning agent. You work step by step: for every step you call exactly one tool, "
          "read its result, and continue until the trip is planned. Prefer cheap options, check the weather "
          "before outdoor plans, and always confirm bookings. Answer in English.")

_CITY = {"type": "string", "description": "City name", "maxLength": 24}
_DATE = {"type": "string", "description": "Date as YYYY-MM-DD", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}


def _tool(name: str, description: str, props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}}}


TOOLS = [
    _tool("get_weather", "Weather forecast for a city on a date", {"city": _CITY, "date": _DATE}),
    _tool("search_flights", "Search flights between two cities", {"origin": _CITY, "destination": _CITY, "date": _DATE}),
    _tool("book_flight", "Book a flight by its id", {"flight_id": {"type": "string", "maxLength": 12}}),
    _tool("search_hotels", "Search hotels in a city", {"city": _CITY, "max_price": {"type": "integer", "maximum": 1000}}),
    _tool("book_hotel", "Book a hotel by its id", {"hotel_id": {"type": "string", "maxLength": 12}}),
    _tool("convert_currency", "Convert an amount between currencies",
          {"amount": {"type": "integer", "maximum": 100000}, "from": {"type": "string", "maxLength": 3},
           "to": {"type": "string", "maxLength": 3}}),
    _tool("get_time", "Local time in a city", {"city": _CITY}),
    _tool("find_restaurants", "Restaurants in a city", {"city": _CITY, "cuisine": {"type": "string", "maxLength": 16}}),
    _tool("get_attractions", "Top attractions in a city", {"city": _CITY}),
    _tool("send_email", "Send the itinerary by email", {"to": {"type": "string", "maxLength": 40},
                                                        "subject": {"type": "string", "maxLength": 40}}),
]
CITIES = ["Paris", "Rome", "Lisbon", "Vienna", "Prague", "Oslo", "Madrid", "Athens", "Dublin", "Berlin"]


def tool_result(name: str, turn: int) -> str:
    """A deterministic, plausible tool result of moderate size."""
    return json.dumps({"tool": name, "status": "ok", "turn": turn,
                       "items": [{"id": f"X{turn}{i}", "score": round(0.9 - i * 0.1, 2), "note": "available"}
                                 for i in range(3)]})


async def run_agent(http: httpx.AsyncClient, server: Server, agent: int, turns: int, max_tokens: int,
                    rng: random.Random, system: str = SYSTEM) -> list[dict[str, Any]]:
    city = CITIES[agent % len(CITIES)]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Plan a 3-day trip from London to {city} next month for agent #{agent}."}]
    records = []
    for turn in range(turns):
        await asyncio.sleep(rng.uniform(0.0, 0.05))  # the agent's own work between turns
        body = {"model": server.model, "messages": messages, "tools": TOOLS, "tool_choice": "required",
                "parallel_tool_calls": False, "max_tokens": max_tokens, "temperature": 0}
        r: StreamResult = await stream_chat(http, server.url, body)
        records.append({"agent": agent, "turn": turn, "ttft": r.ttft, "prompt_tokens": r.prompt_tokens,
                        "cached_tokens": r.cached_tokens, "tool_call": bool(r.tool_calls)})
        call = r.tool_calls[0] if r.tool_calls else {"id": None, "name": "get_weather",
                                                      "arguments": json.dumps({"city": city, "date": "2025-06-01"})}
        call_id = call["id"] or f"call_{agent}_{turn}"
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": call["name"], "arguments": call["arguments"]}}]})
        messages.append({"role": "tool", "tool_call_id": call_id, "content": tool_result(str(call["name"]), turn)})
    return records


async def run_server(server: Server, agents: int, turns: int, max_tokens: int,
                     own_opening: bool = False) -> list[dict[str, Any]]:
    """own_opening: each agent's system prompt starts with its own line, so agents share no KV block."""
    rng = random.Random(0)
    async with httpx.AsyncClient(timeout=600, limits=client_limits(agents)) as http:
        per_agent = await asyncio.gather(*(
            run_agent(http, server, a, turns, max_tokens, random.Random(rng.random()),
                      f"You are agent #{a}, planning for client {a * 7919 % 1000}.\n{SYSTEM}" if own_opening else SYSTEM)
            for a in range(agents)))
    return [rec for records in per_agent for rec in records]


def summarize(name: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    first = [r for r in records if r["turn"] == 0]
    later = [r for r in records if r["turn"] > 0]
    prompt_later = sum(r["prompt_tokens"] for r in later)
    prompt_all = sum(r["prompt_tokens"] for r in records)
    return {
        "server": name, "turns": len(records),
        "ttft_first_p50": pct([r["ttft"] for r in first], 50), "ttft_first_p99": pct([r["ttft"] for r in first], 99),
        "ttft_later_p50": pct([r["ttft"] for r in later], 50), "ttft_later_p99": pct([r["ttft"] for r in later], 99),
        "cached_share_later": sum(r["cached_tokens"] for r in later) / prompt_later if prompt_later else float("nan"),
        "cached_share_all": sum(r["cached_tokens"] for r in records) / prompt_all if prompt_all else float("nan"),
        "tool_call_rate": sum(r["tool_call"] for r in records) / len(records),
        "mean_prompt_tokens": prompt_all / len(records),
    }


def plot(all_records: dict[str, list[dict[str, Any]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, records in all_records.items():
        ttfts = sorted(r["ttft"] * 1000 for r in records if r["turn"] > 0)
        if ttfts:
            ax.plot(ttfts, [(i + 1) / len(ttfts) for i in range(len(ttfts))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("time to first token, ms (turns after the first)")
    ax.set_ylabel("share of turns")
    ax.set_title("Agent workload: TTFT distribution")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--url", default=None, help="benchmark an already running sluicegate instead of starting one")
    ap.add_argument("--results", action="store_true", help="also copy table, JSON and PNG into bench/results/")
    ap.add_argument("--no-peers", action="store_true", help="sluicegate only (to compare its own settings)")
    ap.add_argument("--serve-args", default="", help="extra flags for `sluicegate serve`, e.g. '--max-num-batched-tokens 256'")
    args = ap.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    servers: list[Server] = []
    if args.url:
        servers.append(Server("sluicegate", args.url, None, httpx.get(f"{args.url}/v1/models").json()["data"][0]["id"]))
    else:
        servers.append(start_sluicegate(shlex.split(args.serve_args)))
    # a conversation grows past 2,048 tokens after ~5 turns
    peers, absent = ([], []) if args.no_peers else start_peers(
        default_gguf(), slots=args.agents, threads=args.threads, ctx_per_slot=4096, tools=True)
    servers += peers
    all_records: dict[str, list[dict[str, Any]]] = {}
    try:
        for server in servers:
            print(f"[bench] {server.name}: {args.agents} agents x {args.turns} turns ...", flush=True)
            all_records[server.name] = asyncio.run(run_server(server, args.agents, args.turns, args.max_tokens))
    finally:
        for server in servers:
            server.stop()
    rows = [summarize(name, recs) for name, recs in all_records.items()]
    headers = ["server", "turns", "TTFT p50 s (turn 1)", "TTFT p99 s (turn 1)", "TTFT p50 s (later)",
               "TTFT p99 s (later)", "cached share (later)", "cached share (all)", "tool-call rate", "mean prompt tok"]
    table = markdown_table(headers, [[r["server"], r["turns"], r["ttft_first_p50"], r["ttft_first_p99"],
                                      r["ttft_later_p50"], r["ttft_later_p99"], r["cached_share_later"],
                                      r["cached_share_all"], r["tool_call_rate"], r["mean_prompt_tokens"]]
                                     for r in rows])
    notes = absent + [f"servers: {s.name} {' '.join(s.command)}" for s in servers if s.command]
    text = table + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else "")
    print(text)
    if have_matplotlib():
        plot(all_records, OUT_DIR / "agent.png")
        print(f"[bench] plot: {OUT_DIR / 'agent.png'}")
    save("agent", {"rows": rows, "records": all_records, "notes": notes}, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
