"""Soak: many concurrent streams of mixed requests against a live sluicegate on 127.0.0.1, then proof
that nothing was lost or left behind.

    python bench/soak.py                      # 2,000 requests, 200 at a time, max_tokens 6
    python bench/soak.py --requests 200 --concurrency 40

The server runs in this process (uvicorn on a free loopback port, its own event loop thread), so at
the end the engine itself is inspected: check_integrity(), no request or stream queue left, KV usage
0, no live grammar matcher, and the process RSS against its value after warm-up. The mix cycles
through plain chat (whole and streamed), tool calls, json_schema, n=3 (whole and streamed), clients
that hang up mid-stream and clients that give up while queued. Every request must end as "ok",
"disconnected" (on purpose) or a clean error (an OpenAI error object, by status); anything else is
"lost": the goal is 0. It stops by itself: every request has a client timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.live_server import wait_ready  # noqa: E402  (one readiness poll for tests and bench)

TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}
KINDS = ("plain", "plain_stream", "tools", "tools_stream", "json_schema", "n3", "n3_stream",
         "disconnect_mid_stream", "give_up_queued")


# ---- the live server -------------------------------------------------------------------------

@dataclass
class LiveServer:
    url: str
    engine: Any
    model: str
    stop: Callable[[], None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(settings: Any | None = None, engine: Any | None = None) -> LiveServer:
    """uvicorn on 127.0.0.1 in a background thread; loads the default model unless `engine` is given."""
    import uvicorn

    from sluicegate.engine.config import CacheConfig, EngineConfig
    from sluicegate.gateway.app import create_app
    from sluicegate.gateway.settings import ServeSettings

    port = _free_port()
    settings = settings or ServeSettings(engine=EngineConfig(cache=CacheConfig(kv_cache_memory_gb=0.5)))
    app = create_app(settings, engine=engine, progress=lambda _: None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5, backlog=4096))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, timeout=300)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=60)

    state = app.state.sg
    return LiveServer(url=url, engine=state.engine, model=state.model_name, stop=stop)


# ---- one request of each kind ----------------------------------------------------------------

def _body(kind: str, model: str, i: int, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "temperature": 0.7, "seed": i,
                            "messages": [{"role": "user", "content": f"Request {i}: say something about {i % 17}."}]}
    if kind.startswith("tools"):
        body["tools"], body["tool_choice"] = [TOOL], ("required" if i % 2 else "auto")
        body["messages"][0]["content"] = f"What is the weather in city number {i}?"
    if kind == "json_schema":
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}
    if kind.startswith("n3"):
        body["n"] = 3
    if kind.endswith("stream") or kind == "disconnect_mid_stream":
        body["stream"], body["stream_options"] = True, {"include_usage": True}
    if kind == "give_up_queued":
        body["max_tokens"] = max_tokens * 4
    return body


def _is_error_object(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict) and "message" in payload["error"]


def _check_whole(kind: str, payload: dict[str, Any], n: int) -> str:
    choices = payload.get("choices") or []
    if len(choices) != n or any(c.get("finish_reason") is None for c in choices):
        return "lost"
    if kind == "json_schema" and choices[0]["finish_reason"] == "stop":
        json.loads(choices[0]["message"]["content"])  # raises -> lost (a grammar that let bad JSON out)
    return "ok"


async def _stream(http: httpx.AsyncClient, url: str, body: dict[str, Any], hang_up: bool) -> str:
    n = body.get("n", 1)
    finished: set[int] = set()
    async with http.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            payload = json.loads(await r.aread())
            return f"error_{r.status_code}" if _is_error_object(payload) else "lost"
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            if hang_up:
                return "disconnected"  # leaving the block closes the connection mid-stream
            if line == "data: [DONE]":
                return "ok" if len(finished) == n else "lost"
            event = json.loads(line[6:])
            if _is_error_object(event):
                return f"error_in_stream_{event['error'].get('code')}"
            finished |= {c["index"] for c in event.get("choices", []) if c.get("finish_reason")}
    return "lost"  # the stream ended without [DONE]


async def one_request(http: httpx.AsyncClient, url: str, model: str, kind: str, i: int, max_tokens: int) -> str:
    """Send one request of `kind`; its outcome: ok | disconnected | error_<status> | lost."""
    body = _body(kind, model, i, max_tokens)
    endpoint = f"{url}/v1/chat/completions"
    try:
        if body.get("stream"):
            return await _stream(http, endpoint, body, hang_up=kind == "disconnect_mid_stream")
        if kind == "give_up_queued":  # the client gives up while its request queues or prefills
            try:
                await asyncio.wait_for(http.post(endpoint, json=body), timeout=0.05 + (i % 5) * 0.1)
            except TimeoutError:
                return "disconnected"
            return "ok"
        r = await http.post(endpoint, json=body)
        payload = r.json()
        if r.status_code != 200:
            return f"error_{r.status_code}" if _is_error_object(payload) else "lost"
        return _check_whole(kind, payload, body.get("n", 1))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        print(f"soak: request {i} ({kind}) lost: {type(exc).__name__}: {exc}", file=sys.stderr)
        return "lost"


# ---- the soak --------------------------------------------------------------------------------

@dataclass
class SoakResult:
    outcomes: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=dict)
    peak_in_flight: int = 0
    seconds: float = 0.0

    @property
    def lost(self) -> int:
        return self.outcomes["lost"]


async def run_soak(url: str, model: str, total: int, concurrency: int, max_tokens: int,
                   request_timeout: float = 600.0) -> SoakResult:
    """`total` requests, at most `concurrency` open at once, kinds in a fixed cycle."""
    result = SoakResult(by_kind={k: Counter() for k in KINDS})
    in_flight = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency + 16, max_keepalive_connections=concurrency + 16)
    timeout = httpx.Timeout(request_timeout, connect=60)

    async def worker(http: httpx.AsyncClient) -> None:
        nonlocal in_flight, next_index
        while next_index < total:
            i, next_index = next_index, next_index + 1
            kind = KINDS[i % len(KINDS)]
            in_flight += 1
            result.peak_in_flight = max(result.peak_in_flight, in_flight)
            try:
                outcome = await one_request(http, url, model, kind, i, max_tokens)
            finally:
                in_flight -= 1
            result.outcomes[outcome] += 1
            result.by_kind[kind][outcome] += 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    result.seconds = time.perf_counter() - t0
    return result


# ---- what must be left: nothing --------------------------------------------------------------

def live_matchers() -> int:
    """Grammar matchers still alive anywhere in the process (each request owns one while it runs)."""
    from sluicegate.grammars.llguidance_backend import LLGuidanceMatcher

    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is LLGuidanceMatcher)  # type(): no torch lazy-module warnings


def wait_idle(engine: Any, timeout: float = 60.0) -> dict[str, Any]:
    """Until the engine holds no request (aborts land asynchronously); then what is left, checked."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = engine.stats()
        if stats.num_running == 0 and stats.num_waiting == 0 and not engine.engine.requests and not engine._queues:
            break
        time.sleep(0.05)
    engine.check_integrity()  # raises AssertionError on a leaked block or request
    stats = engine.stats()
    return {"requests": len(engine.engine.requests), "stream_queues": len(engine._queues),
            "running": stats.num_running, "waiting": stats.num_waiting, "kv_usage": stats.kv_usage,
            "matchers": live_matchers()}


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def trimmed_rss_mb() -> float:
    """RSS after glibc hands its free heap pages back (malloc_trim): what is still really held."""
    import ctypes
    import ctypes.util

    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
    return rss_mb()


def table(result: SoakResult, leftovers: dict[str, Any], rss: tuple[float, ...], concurrency: int) -> str:
    lines = ["| kind | " + " | ".join(sorted(result.outcomes)) + " |", "|---" * (len(result.outcomes) + 1) + "|"]
    for kind, counts in result.by_kind.items():
        lines.append(f"| {kind} | " + " | ".join(str(counts[o]) for o in sorted(result.outcomes)) + " |")
    lines.append("| **all** | " + " | ".join(str(result.outcomes[o]) for o in sorted(result.outcomes)) + " |")
    total = sum(result.outcomes.values())
    lines += [
        "",
        "| measure | value |", "|---|---|",
        f"| requests | {total} in {result.seconds:.0f} s ({total / max(result.seconds, 1e-9):.1f}/s) |",
        f"| concurrency (client) / peak open | {concurrency} / {result.peak_in_flight} |",
        f"| lost | {result.lost} |",
        f"| engine after: requests / queues / running / waiting | {leftovers['requests']} / "
        f"{leftovers['stream_queues']} / {leftovers['running']} / {leftovers['waiting']} |",
        f"| KV usage after | {leftovers['kv_usage']:.3f} |",
        f"| live grammar matchers after | {leftovers['matchers']} |",
        "| check_integrity() | passed |",
        f"| RSS after warm-up / peak / end (MiB) | {rss[0]:.0f} / {rss[1]:.0f} / {rss[2]:.0f} |",
        f"| RSS end after malloc_trim (MiB) | {rss[3]:.0f} |",
    ]
    return "\n".join(lines)


async def _sample_rss(stop: asyncio.Event, peak: list[float]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb())
        await asyncio.sleep(0.5)


async def soak_with_rss(server: LiveServer, total: int, concurrency: int, max_tokens: int) -> tuple[SoakResult, float]:
    stop, peak = asyncio.Event(), [rss_mb()]
    sampler = asyncio.create_task(_sample_rss(stop, peak))
    try:
        result = await run_soak(server.url, server.model, total, concurrency, max_tokens)
    finally:
        stop.set()
        await sampler
    return result, peak[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1, help="repeat the soak: RSS per round shows growth or a plateau")
    parser.add_argument("--warmup", type=int, default=None,
                        help="requests sent first at full concurrency (RSS is measured after them); default: concurrency")
    args = parser.parse_args()
    print("soak: loading the default model and starting the server on 127.0.0.1 ...", file=sys.stderr, flush=True)
    server = start_server()
    try:
        warmup = args.warmup if args.warmup is not None else args.concurrency
        asyncio.run(run_soak(server.url, server.model, warmup, args.concurrency, args.max_tokens))
        wait_idle(server.engine)
        rss_start = trimmed_rss_mb()
        for round_index in range(args.rounds):
            print(f"soak: round {round_index + 1}: {args.requests} requests, {args.concurrency} at a time ...",
                  file=sys.stderr, flush=True)
            result, rss_peak = asyncio.run(soak_with_rss(server, args.requests, args.concurrency, args.max_tokens))
            leftovers = wait_idle(server.engine)
            gc.collect()
            rss = (rss_start, rss_peak, rss_mb(), trimmed_rss_mb())
            print(f"\n### round {round_index + 1}\n\n" + table(result, leftovers, rss, args.concurrency), flush=True)
    finally:
        server.stop()
    clean = result.lost == 0 and leftovers["kv_usage"] == 0 and leftovers["matchers"] == 0
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
