"""Pure ASGI middleware (no BaseHTTPMiddleware: it breaks streaming cancellation): a body-size limit
(413) and per-endpoint request counting by status for /metrics."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluicegate.gateway import errors
from sluicegate.gateway.metrics import Metrics


class _TooLarge(StarletteHTTPException):
    """Raised from receive(); an HTTPException so FastAPI's body reader passes it on as a 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, errors.body_too_large(limit).message)


class BodyLimitMiddleware:
    """413 when Content-Length (or the bytes actually received) exceed the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_error(send, errors.body_too_large(self.max_bytes))
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_error(send, errors.body_too_large(self.max_bytes))


async def _send_error(send: Send, err: errors.APIError) -> None:
    response = err.response()
    await response({"type": "http"}, _never_receive, send)


async def _never_receive() -> Message:
    return {"type": "http.disconnect"}


class RequestMetricsMiddleware:
    """Counts /v1 requests by path and response status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        status: dict[str, Any] = {"code": 0}

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            self.metrics.observe_request(_endpoint(path), status["code"] or 499)


def _endpoint(path: str) -> str:
    """Bounded label values: the known endpoints, everything else as 'other'."""
    for known in ("/v1/chat/completions", "/v1/completions", "/v1/models"):
        if path.startswith(known):
            return known
    return "other"
