"""Faults: the client goes away at every stage of a request (queued, compiling its grammar,
prefilling, decoding), a grammar compile runs past its limit, one request's processing raises, and
SIGTERM arrives with requests in flight. After each, the other requests finish normally and the
engine holds no request and no KV block.

MCP servers that crash or hang are covered by tests/integration/test_mcp_hub.py
(test_crashing_server_is_reported_and_restarted, test_hanging_tool_times_out_and_the_server_keeps_serving)
and tests/integration/test_mcp_gateway.py (test_hanging_tool_times_out_and_the_gateway_keeps_serving,
test_crashing_server_gives_an_error_for_that_call).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from sluicegate.engine.async_engine import AsyncEngine
from sluicegate.engine.outputs import RequestOutput
from sluicegate.engine.params import SamplingParams
from sluicegate.engine.request import RequestStatus
from sluicegate.grammars.specs import JsonSchema
from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def _long(max_tokens: int = 400, **kw: Any) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens, ignore_eos=True, temperature=0.0, **kw)


async def _until(cond: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


async def _drain(gen: AsyncIterator[RequestOutput]) -> RequestOutput:
    last = None
    async for out in gen:
        last = out
    assert last is not None
    return last


def _open(engine: AsyncEngine, prompt: list[int], params: SamplingParams, request_id: str | None = None) -> Any:
    """engine.generate(), typed as the async generator it is (closable)."""
    return engine.generate(prompt, params, request_id=request_id)


def _next(gen: Any) -> asyncio.Task[RequestOutput]:
    """The stream's next output as a task: cancelling it is what a departing client's handler sees."""
    return asyncio.ensure_future(gen.__anext__())


async def _idle(engine: AsyncEngine) -> None:
    await _until(lambda: not engine.engine.requests and not engine._queues)
    engine.check_integrity()
    assert engine.stats().kv_usage == 0.0


@pytest.fixture
async def engine(make_engine: Callable[..., Any]) -> AsyncIterator[AsyncEngine]:
    """An AsyncEngine over make_engine's LLMEngine (its fixture checks integrity afterwards)."""
    inner = make_engine(max_num_seqs=2, max_num_batched_tokens=64)
    eng = AsyncEngine(inner.config, engine=inner)
    await eng.start()
    yield eng
    await eng.shutdown()


def _prompt(engine: AsyncEngine, words: int) -> list[int]:
    return list(engine.tokenizer(" ".join(["lorem"] * words))["input_ids"])


async def test_client_gone_at_every_stage(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A survivor decodes throughout; clients leave while queued, compiling, prefilling and decoding."""
    inner = engine.engine
    survivor = _open(engine, _prompt(engine, 8), _long(60), request_id="survivor")
    first = await survivor.__anext__()
    assert not first.finished

    # decoding: two outputs read, then the client closes its stream
    dec = _open(engine, _prompt(engine, 8), _long(), request_id="decoding")
    await dec.__anext__()
    await dec.__anext__()
    await dec.aclose()
    await _until(lambda: "decoding" not in inner.requests)

    # queued: max_num_seqs=2, so a third request waits while the survivor and a blocker run
    blocker = _open(engine, _prompt(engine, 8), _long(), request_id="blocker")
    await blocker.__anext__()
    queued = _open(engine, _prompt(engine, 8), _long(), request_id="queued")
    task = _next(queued)
    await _until(lambda: "queued" in inner.requests)
    assert inner.requests["queued"].status is RequestStatus.WAITING
    task.cancel()  # the HTTP handler's task is cancelled when its client goes
    await asyncio.gather(task, return_exceptions=True)
    await queued.aclose()
    await blocker.aclose()
    await _until(lambda: not {"queued", "blocker"} & set(inner.requests))

    # compiling its grammar: the backend's compile is held up for a second
    compiler = inner.grammar.compiler
    real_compile = compiler.backend.compile

    def slow_compile(spec: Any) -> Any:
        time.sleep(1.0)
        return real_compile(spec)

    monkeypatch.setattr(compiler.backend, "compile", slow_compile)
    compiling = _open(engine, _prompt(engine, 8), _long(grammar=JsonSchema.of(SCHEMA)), request_id="compiling")
    task = _next(compiling)
    await _until(lambda: "compiling" in inner.requests)
    assert inner.requests["compiling"].status is RequestStatus.WAITING_FOR_GRAMMAR
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await compiling.aclose()
    await _until(lambda: "compiling" not in inner.requests)

    # prefilling: a 600-token prompt takes ~10 steps at 64 tokens a step
    prefill = _open(engine, _prompt(engine, 600), _long(), request_id="prefilling")
    task = _next(prefill)
    await _until(lambda: "prefilling" in inner.requests and inner.requests["prefilling"].num_computed_tokens > 0)
    request = inner.requests["prefilling"]
    assert request.num_computed_tokens < request.num_prompt_tokens
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await prefill.aclose()

    last = await _drain(survivor)  # the survivor never noticed
    assert last.finish_reason == "length" and last.num_output_tokens == 60
    await asyncio.sleep(1.2)  # the held-up compile finishes in the background; its result is dropped
    await _idle(engine)


class _RaisingMatcher:
    """Wraps a real matcher; raises on the 3rd accepted token (a bug inside one request's processing)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    def fill_bitmask(self, bitmask: Any, row: int) -> None:
        self.inner.fill_bitmask(bitmask, row)

    def accept_token(self, token_id: int) -> bool:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("injected matcher failure")
        return bool(self.inner.accept_token(token_id))

    def is_terminated(self) -> bool:
        return bool(self.inner.is_terminated())

    def forced_tokens(self) -> list[int]:
        return list(self.inner.forced_tokens())

    def rollback(self, num_tokens: int) -> None:
        self.inner.rollback(num_tokens)


async def test_exception_in_one_request_fails_only_that_request(engine: AsyncEngine) -> None:
    inner = engine.engine
    others = [_open(engine, _prompt(engine, 8), _long(30), request_id=f"other-{i}") for i in range(1)]
    firsts = [await g.__anext__() for g in others]
    assert not any(f.finished for f in firsts)
    faulty = _open(engine, _prompt(engine, 8), _long(30, grammar=JsonSchema.of(SCHEMA)), request_id="faulty")
    task = _next(faulty)
    await _until(lambda: "faulty" in inner.requests and inner.requests["faulty"].matcher is not None
                 or task.done())
    with inner._lock:  # swap the matcher before the step loop feeds it a token
        if "faulty" in inner.requests:
            inner.requests["faulty"].matcher = _RaisingMatcher(inner.requests["faulty"].matcher)
    out = await task
    while not out.finished:
        out = await faulty.__anext__()
    await faulty.aclose()
    assert out.finish_reason == "error" and "injected matcher failure" in (out.error or "")
    for g in others:  # the rest of the batch keeps going to its end
        assert (await _drain(g)).finish_reason == "length"
    # and the engine keeps serving new requests
    assert (await _drain(_open(engine, _prompt(engine, 4), _long(5)))).finish_reason == "length"
    await _idle(engine)


def test_grammar_compile_past_its_limit_is_400_and_the_engine_goes_on(servers: Any, idle: Any) -> None:
    """The `tight` engine's compile limit is 1 ms: the request gets a 400 naming the limit."""
    url = servers.urls["tight"]
    schema = {"enum": [f"value number {i}" for i in range(20_000)]}  # ~80 ms to compile: 80x the limit
    body = {"model": servers.model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "big", "schema": schema}}}
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert "exceeded" in r.json()["error"]["message"] and r.json()["error"]["param"] == "response_format"
    plain = {"model": servers.model, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{url}/v1/chat/completions", json=plain, timeout=60).status_code == 200


def _stream_lines(url: str, body: dict[str, Any], out: list[Any], started: threading.Event) -> None:
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    out.append(line[6:])
                    if len(out) >= 2:
                        started.set()
    except httpx.HTTPError as exc:
        out.append(exc)
    started.set()


def test_sigterm_lets_in_flight_requests_finish_and_refuses_new_ones(tmp_path: Any) -> None:
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "sluicegate.gateway.cli", "serve", "--port", str(port),
                             "--kv-cache-memory-gb", "0.1", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        from tests.live_server import wait_ready

        wait_ready(url)
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        body = {"model": model, "stream": True, "max_tokens": 40, "ignore_eos": True,
                "messages": [{"role": "user", "content": "Count to fifty."}]}
        streams: list[list[Any]] = [[] for _ in range(4)]
        events = [threading.Event() for _ in streams]
        threads = [threading.Thread(target=_stream_lines, args=(url, body, s, e)) for s, e in zip(streams, events, strict=True)]
        whole: list[Any] = []
        whole_thread = threading.Thread(target=lambda: whole.append(httpx.post(
            f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=120)))
        for t in [*threads, whole_thread]:
            t.start()
        for e in events:
            assert e.wait(60)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        refused: Any
        try:  # a new request: the socket is closed (or, at worst, a 503 while draining)
            refused = httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": False}, timeout=5).status_code
        except httpx.TransportError as exc:
            refused = type(exc).__name__
        assert refused in ("ConnectError", 503), refused
        for t in [*threads, whole_thread]:
            t.join(120)
        for lines in streams:  # every in-flight stream ran to its end
            assert lines and lines[-1] == "[DONE]", lines[-3:]
            assert json.loads(lines[-2])["choices"][0]["finish_reason"] == "length"
        assert whole and whole[0].status_code == 200
        assert whole[0].json()["choices"][0]["finish_reason"] == "length"
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        output = log.read()
    assert "Traceback" not in output, output
