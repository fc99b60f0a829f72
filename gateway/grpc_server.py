"""The gRPC server beside the HTTP one (`sluicegate serve --grpc-port`), over the same engine.

    handle = await start(engine, settings, model_name)   # after the engine runs (gateway/app.py)
    ...
    await handle.stop()                                   # at shutdown: drain, then close

Serves sluicegate.v1.Inference (grpc_servicer.py), the standard grpc.health.v1 service
(NOT_SERVING until the servicer is ready and again while draining, SERVING in between) and server
reflection (grpcurl / grpcui can list and call everything without the .proto). When the server has
an API key, Inference calls must carry it in metadata (`authorization: Bearer <key>` or
`x-api-key`); health and reflection stay open for probes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

try:
    import grpc
except ImportError as exc:
    from sluicegate.extras import missing_extra_message

    raise ImportError(missing_extra_message("grpc", "the gRPC server (--grpc-port)")) from exc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sluicegate.gateway import errors
from sluicegate.gateway.grpc_servicer import InferenceServicer
from sluicegate.gateway.settings import ServeSettings
from sluicegate.proto.sluicegate.v1 import inference_pb2 as pb
from sluicegate.proto.sluicegate.v1 import inference_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Inference"].full_name  # "sluicegate.v1.Inference"
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for Inference calls without the key (compared in constant time)."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(f"/{SERVICE_NAME}/"):
            return handler
        metadata = {k.lower(): v for k, v in details.invocation_metadata or () if isinstance(v, str)}
        if errors.api_key_matches(self.api_key, metadata.get("authorization"), metadata.get("x-api-key")):
            return handler
        return _refusal(handler)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that ends the call with UNAUTHENTICATED."""
    message = "Incorrect API key provided. Pass it as metadata `authorization: Bearer <key>`."

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as a streaming handler must be

    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(stream, **codec)
    return grpc.unary_unary_rpc_method_handler(unary, **codec)


@dataclass
class GrpcHandle:
    """A started server: `port` is the bound port (useful with grpc_port 0); `stop()` drains it."""

    server: grpc.aio.Server
    health: health.aio.HealthServicer
    servicer: InferenceServicer
    port: int
    grace_s: float

    async def set_serving(self, serving: bool) -> None:
        status = _SERVING if serving else _NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self) -> None:
        """NOT_SERVING, refuse new calls (UNAVAILABLE), let calls in flight finish within the grace."""
        self.servicer.accepting = False
        await self.set_serving(False)
        await self.server.stop(self.grace_s)


async def start(engine: Any, settings: ServeSettings, model_name: str) -> GrpcHandle:
    """Build, bind and start the gRPC server on settings.host:settings.grpc_port."""
    from sluicegate.gateway.chat_format import ChatRenderer

    # the same renderer class and template as HTTP: prompts render to identical tokens
    renderer = await asyncio.to_thread(ChatRenderer, engine.tokenizer, engine.chat_template,
                                       settings.explicit_tool_format)
    interceptors = [ApiKeyInterceptor(settings.api_key)] if settings.api_key else []
    server = grpc.aio.server(interceptors=interceptors, options=[
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.so_reuseport", 0),
    ])
    servicer = InferenceServicer(engine, renderer, model_name, settings.retry_after_s)
    pb_grpc.add_InferenceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port or 0}")
    if port == 0:
        raise OSError(f"could not bind gRPC to {settings.host}:{settings.grpc_port}")
    handle = GrpcHandle(server, health_servicer, servicer, port, settings.graceful_shutdown_s)
    await handle.set_serving(False)  # not ready until it starts answering
    await server.start()
    await handle.set_serving(getattr(engine, "is_running", True))
    return handle
