"""Serve one forwarded request with an ASGI app in this process and stream its reply back.

Each replica runs the ordinary gateway app (gateway/app.py) this way, so the HTTP API, streaming
and errors behind `--replicas` are exactly those of the single-machine server. Closing the stream
(the client went away) reads as an HTTP disconnect to the app, which aborts its engine requests.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from sluicegate.gateway.cluster.messages import ForwardedRequest, ResponseStart

Message = MutableMapping[str, Any]
ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]

_APP_DONE: Message = {"type": "sluicegate.app_done"}
DRAIN_S = 5.0  # after a disconnect, how long the app may take to wind down before it is cancelled


def http_scope(request: ForwardedRequest) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": request.method, "scheme": "http", "path": request.path, "raw_path": request.path.encode(),
        "query_string": request.query_string, "root_path": "", "headers": request.headers,
        "client": ("ray-serve-ingress", 0), "server": ("sluicegate-replica", 0), "state": {},
    }


async def serve_request(app: ASGIApp, request: ForwardedRequest,
                        replica: str) -> AsyncIterator[ResponseStart | bytes]:
    """Yield the ResponseStart, then the body chunks, of `app`'s reply to `request`."""
    messages: asyncio.Queue[Message] = asyncio.Queue()
    disconnected = asyncio.Event()
    body_given = False

    async def receive() -> Message:
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await disconnected.wait()  # Starlette's streaming responses listen for this
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        messages.put_nowait(message)

    task: asyncio.Future[None] = asyncio.ensure_future(app(http_scope(request), receive, send))
    task.add_done_callback(lambda _: messages.put_nowait(_APP_DONE))
    try:
        while True:
            message = await messages.get()
            kind = message["type"]
            if kind == "http.response.start":
                yield ResponseStart(message["status"], list(message.get("headers", [])), replica)
            elif kind == "http.response.body":
                if message.get("body"):
                    yield bytes(message["body"])
                if not message.get("more_body", False):
                    return
            elif message is _APP_DONE:
                task.result()  # the app's own exception, if it raised one before replying
                raise RuntimeError("the app returned without a complete response")
    finally:
        disconnected.set()
        if not task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), DRAIN_S)
            task.cancel()
