"""Driving engine requests for one HTTP request: open n streams, merge them, collect them, and give
up (aborting every engine request) when the client goes away.

Closing an engine.generate() generator aborts its request and frees its KV blocks, so every path
here ends by closing the generators it opened, whether it finished, failed or was cancelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request

from sluicegate.gateway import errors
from sluicegate.gateway.metrics import Metrics

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The HTTP client went away before the response was ready."""


@dataclass
class Timing:
    """TTFT / inter-token latency bookkeeping for one engine request."""

    metrics: Metrics
    start: float = field(default_factory=time.perf_counter)
    last: float | None = None

    def tokens(self, count: int) -> None:
        if count <= 0:
            return
        now = time.perf_counter()
        if self.last is None:
            self.metrics.ttft.observe(now - self.start)
        else:
            gap = (now - self.last) / count
            for _ in range(count):
                self.metrics.itl.observe(gap)
        self.last = now

    def done(self) -> None:
        self.metrics.e2e.observe(time.perf_counter() - self.start)


@dataclass
class Primed:
    """An engine stream whose first output has arrived (so refusals surfaced as exceptions)."""

    gen: AsyncGenerator[Any, None]
    first: Any
    timing: Timing


async def _cancel_all(tasks: Sequence[asyncio.Task[Any]]) -> None:
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def gather_or_cancel(aws: Sequence[Awaitable[T]]) -> list[T]:
    """Like gather, but the first failure cancels the rest (no orphaned engine requests)."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await _cancel_all(tasks)
        raise


async def open_streams(engine: Any, prompt_ids: list[int], params_list: Sequence[Any], base_id: str,
                       metrics: Metrics) -> list[Primed]:
    """Submit one engine request per choice and wait for each one's first output."""
    gens = [engine.generate(prompt_ids, p, request_id=f"{base_id}-{i}") for i, p in enumerate(params_list)]
    timings = [Timing(metrics) for _ in gens]

    async def first(i: int) -> Any:
        out = await gens[i].__anext__()
        timings[i].tokens(len(out.new_token_ids))
        return out

    try:
        firsts = await gather_or_cancel([first(i) for i in range(len(gens))])
    except BaseException:
        await close_all(gens)
        raise
    return [Primed(g, f, t) for g, f, t in zip(gens, firsts, timings, strict=True)]


async def close_all(gens: Sequence[AsyncGenerator[Any, None]]) -> None:
    for g in gens:
        try:
            await g.aclose()
        except (RuntimeError, StopAsyncIteration):  # already running/closed elsewhere
            pass


async def iterate(p: Primed) -> AsyncGenerator[Any, None]:
    """The primed stream from its first output on, observing latency; closes the engine stream."""
    try:
        yield p.first
        if not p.first.finished:
            async for out in p.gen:
                p.timing.tokens(len(out.new_token_ids))
                yield out
        p.timing.done()
    finally:
        await p.gen.aclose()


async def merge(primed: Sequence[Primed]) -> AsyncGenerator[tuple[int, Any], None]:
    """Interleave n choices' outputs as they come: (choice index, output)."""
    if len(primed) == 1:  # the common case: no queue, no tasks
        async with aclosing(iterate(primed[0])) as stream:
            async for out in stream:
                yield 0, out
        return
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(i: int, p: Primed) -> None:
        try:
            async with aclosing(iterate(p)) as stream:
                async for out in stream:
                    await queue.put((i, out))
        except Exception as exc:  # surfaced to the consumer
            await queue.put((i, exc))

    tasks = [asyncio.create_task(pump(i, p)) for i, p in enumerate(primed)]
    remaining = len(primed)
    try:
        while remaining:
            i, item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield i, item
            if item.finished:
                remaining -= 1
    finally:
        await _cancel_all(tasks)


async def collect(primed: Sequence[Primed]) -> list[list[Any]]:
    """Every output of every choice (the non-streaming path)."""
    outs: list[list[Any]] = [[] for _ in primed]
    async with aclosing(merge(primed)) as stream:
        async for i, out in stream:
            outs[i].append(out)
    return outs


async def wait_for_disconnect(request: Request) -> None:
    """Returns once the client has gone (the request body is already read, so receive() waits)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`; if the client disconnects first, cancel it (its finally blocks abort the engine
    requests) and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(wait_for_disconnect(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await _cancel_all([task, watcher])
        raise
    if task.done():
        await _cancel_all([watcher])
        return task.result()
    await _cancel_all([task])
    raise ClientDisconnected()


def raise_for_output(out: Any) -> None:
    """A final output that ended in error/abort becomes an HTTP error (non-streaming path)."""
    if out.finish_reason == "error":  # a grammar the backend could not enforce is the spec's fault: 400
        mapped = errors.from_engine_error(out.exception) if out.exception is not None else None
        raise mapped or errors.server_error(out.error or "generation failed")
    if out.finish_reason == "abort":
        raise errors.not_ready(draining=True)
