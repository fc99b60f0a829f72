"""EngineReplica: one engine and the ordinary gateway app inside a Ray Serve replica.

The ingress forwards whole HTTP requests here (serve_http()); the app answers them as the
single-machine server would. The replica reports its queue and KV use to the router through
record_routing_stats(), and Ray Serve's health check sees a failed load or a dead step loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any

from sluicegate.gateway.cluster.asgi_bridge import serve_request
from sluicegate.gateway.cluster.messages import ForwardedRequest, ResponseStart
from sluicegate.gateway.settings import ServeSettings


class EngineReplica:
    """A Ray Serve deployment class (app.py applies serve.deployment to it)."""

    async def __init__(self, settings: ServeSettings) -> None:  # type: ignore[misc]  # Serve awaits it
        from ray import serve

        from sluicegate.gateway.app import create_app
        from sluicegate.gateway.cli import configure_logging

        configure_logging(settings.log_level)
        self.replica = serve.get_replica_context().replica_tag

        def progress(message: str) -> None:
            print(f"sluicegate replica {self.replica}: {message}", file=sys.stderr, flush=True)

        self.app: Any = create_app(settings, progress=progress)
        self.state = self.app.state.sg
        self._lifespan = contextlib.AsyncExitStack()
        await self._lifespan.enter_async_context(self.app.router.lifespan_context(self.app))
        # Serve routes to a replica once its constructor returns: return when the engine serves.
        while not self.state.ready:
            if self.state.load_error is not None:
                raise RuntimeError(f"loading the model failed: {self.state.load_error}")
            await asyncio.sleep(0.05)

    async def serve_http(self, request: ForwardedRequest) -> AsyncIterator[ResponseStart | bytes]:
        async for part in serve_request(self.app, request, self.replica):
            yield part

    def record_routing_stats(self) -> dict[str, Any]:
        """The engine's queue and KV use, read by the router (routing.py) every few seconds."""
        stats = self.state.engine.stats()
        return {"waiting": stats.num_waiting, "running": stats.num_running, "kv_usage": stats.kv_usage}

    async def check_health(self) -> None:
        engine = self.state.engine
        if self.state.load_error is not None or engine is None or not engine.is_running:
            raise RuntimeError("the engine's step loop is not running")

    async def __del__(self) -> None:
        self.state.draining = True
        await self._lifespan.aclose()  # shuts the engine down (the app owns it)
