"""Ingress: the HTTP front of `--replicas`; keys each request and relays it to an engine replica.

Ray Serve's HTTP proxy hands every request to this deployment. It reads the body, computes the
request's RouteKey (keys.py), and sends the request through the engine deployment's handle, whose
router (router.py) picks the replica. Until a replica has sent its first body bytes nothing has
reached the client, so a replica that dies before then costs a retry on another replica, not an
error. A stream that dies later ends with an OpenAI error event and `data: [DONE]`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sluicegate.gateway import errors
from sluicegate.gateway.cluster.keys import PromptHasher, route_key
from sluicegate.gateway.cluster.messages import ForwardedRequest, ResponseStart
from sluicegate.gateway.settings import ServeSettings
from sluicegate.gateway.streaming import DONE, SSE_MEDIA_TYPE, sse_event

log = logging.getLogger("sluicegate.cluster")

MAX_ATTEMPTS = 3  # sends of a request no replica has answered yet (the first try included)
REPLICA_HEADER = "x-sluicegate-replica"
_HOP_BY_HOP = {b"connection", b"transfer-encoding", b"keep-alive"}


def build_hasher(settings: ServeSettings) -> PromptHasher:
    """The served model's tokenizer and chat template, as the replicas render prompts."""
    from sluicegate.engine.config import resolve_chat_template
    from sluicegate.engine.models.tokenizer import load_tokenizer
    from sluicegate.gateway.chat_format import ChatRenderer

    model = settings.engine.model
    tokenizer = load_tokenizer(model.model)
    own = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    renderer = ChatRenderer(tokenizer, resolve_chat_template(model.chat_template) or own)
    return PromptHasher(renderer, settings.engine.cache.block_size, settings.cluster.route_prefix_blocks)


def _replica_failed(exc: BaseException) -> bool:
    """The replica process is gone or unreachable (as opposed to a reply it chose to send)."""
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError) or isinstance(getattr(exc, "cause", None), RayActorError)


class Ingress:
    """A Ray Serve deployment class (app.py applies serve.deployment to it)."""

    def __init__(self, engine: Any, settings: ServeSettings) -> None:
        self.engine = engine.options(stream=True)  # a DeploymentHandle to the EngineReplica deployment
        self.settings = settings
        self.hasher = build_hasher(settings)

    async def __call__(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > self.settings.max_body_bytes:
            return errors.body_too_large(self.settings.max_body_bytes).response()
        # rendering and tokenizing the prompt take about a millisecond: done inline, on the loop
        key = route_key(request.url.path, request.headers, body, self.hasher)
        forwarded = ForwardedRequest(
            method=request.method, path=request.url.path, query_string=request.url.query.encode(),
            headers=[(k.lower(), v) for k, v in request.headers.raw], body=body, key=key)
        return await self.relay(forwarded)

    async def relay(self, request: ForwardedRequest) -> Response:
        last: BaseException | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            stream = self.engine.serve_http.remote(request)
            try:
                start: ResponseStart = await stream.__anext__()
                first = await _next_or_none(stream)
            except Exception as exc:
                stream.cancel()
                if not _replica_failed(exc):
                    log.exception("a replica failed to answer")
                    return errors.server_error(f"{type(exc).__name__}: {exc}").response()
                last = exc
                failed = request.routed_to
                log.warning("replica %s failed before answering (attempt %d of %d): %s",
                            failed or "?", attempt, MAX_ATTEMPTS, type(exc).__name__)
                if failed is not None:
                    request.avoid = request.avoid | {failed}
                request.routed_to = None
                continue
            headers = [(k, v) for k, v in start.headers if k.lower() not in _HOP_BY_HOP]
            headers.append((REPLICA_HEADER.encode(), start.replica.encode()))
            response = StreamingResponse(_relay_body(first, stream, _is_sse(headers)), status_code=start.status)
            response.raw_headers = headers
            return response
        return errors.APIError(503, f"no replica could serve the request after {MAX_ATTEMPTS} attempts: {last}",
                               headers={"Retry-After": "1"}).response()


async def _next_or_none(stream: Any) -> bytes | None:
    try:
        chunk: bytes = await stream.__anext__()
        return chunk
    except StopAsyncIteration:
        return None


def _is_sse(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k.lower() == b"content-type" and v.startswith(SSE_MEDIA_TYPE.encode()) for k, v in headers)


async def _relay_body(first: bytes | None, stream: Any, sse: bool) -> AsyncIterator[bytes]:
    finished = False
    try:
        if first is not None:
            yield first
            async for chunk in stream:
                yield chunk
        finished = True
    except Exception as exc:  # the replica died mid-stream: the client already has a 200
        log.warning("replica failed mid-stream: %s: %s", type(exc).__name__, exc)
        if sse:
            message = "The replica serving this stream failed; retry the request."
            yield sse_event(errors.server_error(message).body()).encode()
            yield DONE.encode()
        finished = True
    finally:
        if not finished:  # the client went away: stop the replica's work
            stream.cancel()
