"""The per-app state the routes share, and the FastAPI dependencies that guard /v1 (key, readiness)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from sluicegate.gateway import errors
from sluicegate.gateway.metrics import Metrics
from sluicegate.gateway.settings import ServeSettings


@dataclass
class AppState:
    """One app's view of its engine. `ready` goes on once the engine serves; `draining` on SIGTERM."""

    settings: ServeSettings
    metrics: Metrics
    engine: Any | None = None  # engine.AsyncEngine (typed loosely: the gateway imports no torch at import)
    renderer: Any | None = None  # chat_format.ChatRenderer
    token_text: Any | None = None  # logprobs.TokenText
    model_name: str = ""
    ready: bool = False
    draining: bool = False
    load_error: str | None = None
    extra_servers: list[Any] = field(default_factory=list)  # e.g. the gRPC server, stopped at shutdown
    mcp: Any | None = None  # gateway.mcp.runtime.McpRuntime: hosted MCP servers and /mcp
    created: int = field(default_factory=lambda: int(time.time()))

    def accepting(self) -> bool:
        return self.ready and not self.draining


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.sg
    return state


async def check_api_key(request: Request) -> None:
    """401 unless the request carries the configured key (constant-time comparison)."""
    key = app_state(request).settings.api_key
    if key is None:
        return
    if not errors.api_key_matches(key, request.headers.get("authorization"), request.headers.get("x-api-key")):
        raise errors.unauthorized()


async def serving_state(request: Request) -> AppState:
    """The state, or 503 while the model loads or the server drains."""
    state = app_state(request)
    if not state.accepting():
        raise errors.not_ready(state.draining)
    return state


def check_model(state: AppState, model: str) -> None:
    if model != state.model_name:
        raise errors.model_not_found(model)


Serving = Annotated[AppState, Depends(serving_state)]  # a route parameter: the state, or 503
