"""What the serving path costs: single-stream decode of `engine.LLM`'s engine in-process vs the same
model behind `sluicegate serve` (HTTP, streaming, the official client's wire format), same prompt,
same settings, in one run.

    python bench/serve_overhead.py [--threads 2] [--max-tokens 128] [--streams 1 8] [--results]

Decode tok/s counts tokens after the first over the time from the first to the last token (the
prompt's prefill is left out on both sides); ITL p50 is the median gap between streamed tokens.
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

from bench.serving_common import markdown_table, pct, save, start_sluicegate, stream_chat  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def engine_run(threads: int, max_tokens: int, streams: int) -> dict[str, float]:
    """In-process: the engine's own step loop, token times taken as each step returns."""
    from sluicegate.engine.llm import LLM
    from sluicegate.engine.params import SamplingParams

    llm = LLM(num_threads=threads)
    tokenizer = llm.tokenizer
    ids = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    engine = llm.engine
    for _ in range(2):  # the first round warms up
        times: dict[str, list[float]] = {engine.add_request(list(ids), params): [] for _ in range(streams)}
        while engine.has_unfinished():
            for out in engine.step():
                times[out.request_id] += [time.perf_counter()] * len(out.new_token_ids)
    return _rates(list(times.values()))


def _rates(token_times: list[list[float]]) -> dict[str, float]:
    tokens = sum(len(t) - 1 for t in token_times)
    span = max(t[-1] for t in token_times) - min(t[0] for t in token_times)
    gaps = [b - a for t in token_times for a, b in zip(t, t[1:])]
    return {"tok_s": tokens / span, "itl_p50_ms": 1000 * pct(gaps, 50)}


async def _served(url: str, model: str, max_tokens: int, streams: int) -> dict[str, float]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0, "ignore_eos": True}
    async with httpx.AsyncClient(timeout=600) as http:
        await stream_chat(http, url, body)  # warm-up
        start = time.perf_counter()
        results = await asyncio.gather(*(stream_chat(http, url, body) for _ in range(streams)))
    token_times = []
    for r in results:  # per-delta times, rebuilt from the client's TTFT and gaps
        t = [start + r.ttft]
        for gap in r.gaps:
            t.append(t[-1] + gap)
        token_times.append(t)
    return _rates(token_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--server-args", default="", help="extra `sluicegate serve` flags")
    parser.add_argument("--results", action="store_true", help="copy the table into bench/results/")
    args = parser.parse_args()
    rows: list[list[Any]] = []
    raw: dict[str, Any] = {}
    server = start_sluicegate(["--num-threads", str(args.threads), *args.server_args.split()])
    try:
        for streams in args.streams:
            raw[f"served_{streams}"] = asyncio.run(_served(server.url, server.model, args.max_tokens, streams))
    finally:
        server.stop()
    for streams in args.streams:
        raw[f"engine_{streams}"] = engine_run(args.threads, args.max_tokens, streams)
        engine, served = raw[f"engine_{streams}"], raw[f"served_{streams}"]
        rows.append([streams, engine["tok_s"], served["tok_s"], served["tok_s"] / engine["tok_s"],
                     engine["itl_p50_ms"], served["itl_p50_ms"]])
    headers = ["streams", "engine.LLM tok/s", "sluicegate serve tok/s", "serve / engine", "engine ITL p50 ms",
               "serve ITL p50 ms"]
    table = markdown_table(headers, rows) + f"\n\n{args.threads} torch threads, {args.max_tokens} output tokens, greedy."
    print(table)
    save("serve_overhead", raw, table, args.results)


if __name__ == "__main__":
    main()
