"""A replica serves a forwarded request with the ordinary ASGI app: status and headers first, then
the body as the app streams it; closing the stream early reads as a disconnect to the app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from sluicegate.gateway.cluster.asgi_bridge import serve_request
from sluicegate.gateway.cluster.messages import ForwardedRequest, ResponseStart
from sluicegate.gateway.cluster.routing import RouteKey


def _app(ended: list[str]) -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, object]:
        return {"body": (await request.body()).decode(), "query": request.url.query,
                "header": request.headers.get("x-test")}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            try:
                for i in range(1000):
                    yield f"data: {i}\n\n"
                    await asyncio.sleep(0.001)
            finally:
                ended.append("stream closed")

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def _request(method: str, path: str, body: bytes = b"", query: bytes = b"") -> ForwardedRequest:
    return ForwardedRequest(method=method, path=path, query_string=query, headers=[(b"x-test", b"yes")],
                            body=body, key=RouteKey())


async def test_a_json_reply_comes_back_whole() -> None:
    parts = [p async for p in serve_request(_app([]), _request("POST", "/echo", b"hello", b"a=1"), "r1")]
    start, *body = parts
    assert isinstance(start, ResponseStart) and start.status == 200 and start.replica == "r1"
    assert b"".join(body) == b'{"body":"hello","query":"a=1","header":"yes"}'


async def test_closing_a_stream_early_disconnects_the_app() -> None:
    ended: list[str] = []
    stream = serve_request(_app(ended), _request("GET", "/stream"), "r1")
    start = await stream.__anext__()
    assert isinstance(start, ResponseStart) and dict(start.headers)[b"content-type"].startswith(b"text/event-stream")
    assert await stream.__anext__() == b"data: 0\n\n"
    await stream.aclose()
    assert ended == ["stream closed"]
