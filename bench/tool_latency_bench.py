"""Tool-call latency with grammar fast-forward and prompt-lookup speculation off vs on: one agent
waiting for each call.

    python bench/tool_latency_bench.py [--questions 20] [--max-tokens 128] [--model GGUF] [--results]

Three servers in the same run (`--no-grammar-fast-forward`; the default, fast-forward on; and
fast-forward with `--speculative ngram`), the same BFCL-style questions in `required` mode,
greedy, one request at a time. Per server: time from request to the last tool-call delta
(p50 / p99), forward steps per call (the engine's step counter around each request), output tokens
per step, and whether every call is identical to the first server's (greedy outputs must not
change). Questions: ../shared/data/bfcl/live_simple.jsonl when present, else the built-in ones.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import ROOT, markdown_table, pct, save, start_sluicegate, stream_chat  # noqa: E402

BFCL = ROOT.parent / "shared" / "data" / "bfcl" / "live_simple.jsonl"

_CITY = {"type": "string", "description": "City name"}
BUILT_IN = [
    ("What's the weather in Lisbon in celsius?", "get_weather",
     {"city": _CITY, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}),
    ("Book a table for 4 at Luigi's tonight at 8pm.", "book_table",
     {"restaurant": {"type": "string"}, "party_size": {"type": "integer"}, "time": {"type": "string"}}),
    ("Convert 250 US dollars to euros.", "convert_currency",
     {"amount": {"type": "number"}, "from_currency": {"type": "string"}, "to_currency": {"type": "string"}}),
    ("Find flights from Berlin to Rome on 2026-05-01.", "search_flights",
     {"origin": _CITY, "destination": _CITY, "date": {"type": "string"}}),
]


def _bfcl_type(schema: Any) -> Any:
    """BFCL writes JSON Schema with "dict" for "object" (and a few other spellings)."""
    if isinstance(schema, dict):
        out = {k: _bfcl_type(v) for k, v in schema.items()}
        if out.get("type") == "dict":
            out["type"] = "object"
        if out.get("type") in ("float", "double"):
            out["type"] = "number"
        if out.get("type") == "tuple":
            out["type"] = "array"
        return out
    if isinstance(schema, list):
        return [_bfcl_type(v) for v in schema]
    return schema


def questions(limit: int) -> list[dict[str, Any]]:
    """Chat request bodies (messages + tools), BFCL's when the shared data is here."""
    if BFCL.exists():
        out = []
        for line in BFCL.read_text().splitlines()[:limit]:
            q = json.loads(line)
            tools = [{"type": "function", "function": {"name": re.sub(r"[^a-zA-Z0-9_-]", "_", f["name"]),
                                                       "description": f.get("description", ""),
                                                       "parameters": _bfcl_type(f["parameters"])}}
                     for f in q["function"]]
            out.append({"messages": q["question"][0], "tools": tools})
        return out
    return [{"messages": [{"role": "user", "content": text}],
             "tools": [{"type": "function", "function": {"name": name, "parameters": {
                 "type": "object", "properties": props, "required": list(props)}}}]}
            for text, name, props in BUILT_IN][:limit]


def _steps(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^sluicegate_engine_forward_steps (\S+)$", text, re.M)
    return float(match.group(1)) if match else float("nan")


async def run(url: str, model: str, bodies: list[dict[str, Any]], max_tokens: int) -> list[dict[str, Any]]:
    out = []
    async with httpx.AsyncClient(timeout=300) as http:
        for body in bodies:
            request = {**body, "model": model, "tool_choice": "required", "temperature": 0,
                       "max_tokens": max_tokens, "parallel_tool_calls": False}
            before = _steps(url)
            r = await stream_chat(http, url, request)
            steps = _steps(url) - before
            out.append({"latency_s": r.ttft + sum(r.gaps), "steps": steps, "tokens": r.completion_tokens,
                        "calls": [(c["name"], c["arguments"]) for c in r.tool_calls],  # ids differ per request
                        "finish_reason": r.finish_reason})
    return out


def summary(name: str, rows: list[dict[str, Any]]) -> list[Any]:
    latencies = [r["latency_s"] for r in rows]
    steps = sum(r["steps"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    return [name, len(rows), pct(latencies, 50), pct(latencies, 99), steps / len(rows), tokens / steps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="model to serve (default: the embedded one)")
    parser.add_argument("--dtype", default=None, help="serve --dtype (float32 shows greedy identity exactly)")
    parser.add_argument("--results", action="store_true", help="copy the table into bench/results/")
    args = parser.parse_args()
    bodies = questions(args.questions)
    results: dict[str, list[dict[str, Any]]] = {}
    model = ([args.model] if args.model else []) + (["--dtype", args.dtype] if args.dtype else [])
    configs = (("both off", ["--no-grammar-fast-forward"]), ("fast-forward", []),
               ("fast-forward + ngram speculation", ["--speculative", "ngram"]))
    for name, flags in configs:
        server = start_sluicegate([*model, "--num-threads", str(args.threads), *flags])
        try:
            asyncio.run(run(server.url, server.model, bodies[:1], args.max_tokens))  # warm-up
            results[name] = asyncio.run(run(server.url, server.model, bodies, args.max_tokens))
        finally:
            server.stop()
    base = results["both off"]
    rows = []
    for name, runs in results.items():
        same = sum(a["calls"] == b["calls"] for a, b in zip(base, runs, strict=True))
        speedup = pct([r["latency_s"] for r in base], 50) / pct([r["latency_s"] for r in runs], 50)
        rows.append([*summary(name, runs), f"{same}/{len(runs)}", f"{speedup:.2f}x"])
    headers = ["server", "calls", "latency p50 s", "latency p99 s", "forward steps / call", "output tokens / step",
               "calls identical to both off", "latency p50 vs both off"]
    table = markdown_table(headers, rows)
    table += (f"\n\nModel: {args.model or 'the embedded SmolLM2-135M-Instruct'} ({args.dtype or 'bf16'}); "
              f"{args.threads} torch threads.")
    print(table)
    save("tool_latency", results, table, args.results)


if __name__ == "__main__":
    main()
