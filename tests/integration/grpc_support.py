"""An extra gateway app (HTTP + gRPC via --grpc-port's hook) on the live servers' engine and loop.

The session's `live` fixture (conftest.py) owns the engine and an event loop in a thread; the apps
started here join that loop, so the gRPC server and the engine deliver outputs to the same loop,
exactly as `sluicegate serve --grpc-port` runs them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.integration.conftest import LiveServers, free_port
from tests.live_server import wait_ready


@dataclass(frozen=True)
class GatewayApp:
    http_url: str  # e.g. http://127.0.0.1:PORT (the OpenAI API is under /v1)
    grpc_target: str  # e.g. 127.0.0.1:PORT
    app: Any


@contextmanager
def serve_app(live: LiveServers, api_key: str | None = None) -> Iterator[GatewayApp]:
    """Serve a gateway app with gRPC on free ports, on the live engine; stop it (and its gRPC) after."""
    import uvicorn

    from sluicegate.gateway.app import create_app
    from sluicegate.gateway.settings import ServeSettings

    assert live.loop is not None
    http_port, grpc_port = free_port(), free_port()
    settings = ServeSettings(port=http_port, grpc_port=grpc_port, api_key=api_key, graceful_shutdown_s=2.0)
    app = create_app(settings, engine=live.engine, progress=lambda _: None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=http_port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=2))
    done = asyncio.run_coroutine_threadsafe(server.serve(), live.loop)
    url = f"http://127.0.0.1:{http_port}"
    try:
        wait_ready(url, timeout=60)
        yield GatewayApp(url, f"127.0.0.1:{grpc_port}", app)
    finally:
        server.should_exit = True
        done.result(timeout=30)
