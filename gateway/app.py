"""create_app(settings, engine=None): the FastAPI app. No work at import time.

The port opens at once and answers 503 while the model loads in a background thread (so a
load balancer sees "alive, not ready"); readiness turns on when the engine's step loop runs, and
off again when shutdown (SIGTERM) begins, while uvicorn drains the requests in flight.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from sluicegate import __version__
from sluicegate.engine.config import EngineConfig
from sluicegate.gateway import errors
from sluicegate.gateway.metrics import Metrics
from sluicegate.gateway.middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from sluicegate.gateway.settings import ServeSettings
from sluicegate.gateway.state import AppState

log = logging.getLogger("sluicegate.gateway")


def serving_threads() -> int:
    """Torch CPU threads for a server when --num-threads is not given: every core it may use.
    Measured on 2 cores (bench/serve_overhead.py, bench/results/serving_path.md): with the step
    thread owning the only OpenMP team, two torch threads served 41.9 / 210 / 421 tok/s at 1 / 8 / 32
    streams against one thread's 31.3 / 180 / 272, and the HTTP event loop takes ~2% of a core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def engine_config(settings: ServeSettings) -> EngineConfig:
    """The EngineConfig the serve flags describe; unset --num-threads becomes serving_threads()."""
    return replace(settings.engine, num_threads=settings.engine.num_threads or serving_threads())


def build_engine(settings: ServeSettings, progress: Callable[[str], None]) -> Any:
    """Load the model and build the AsyncEngine (blocking: run it in a thread)."""
    from sluicegate.engine.async_engine import AsyncEngine
    from sluicegate.gateway.memory import apply_memory_defaults

    apply_memory_defaults()  # before the first forward pass: bounds torch's per-shape matmul caches
    progress(f"loading model {settings.engine.model.model or '(embedded default: SmolLM2-135M-Instruct)'}")
    t0 = time.perf_counter()
    engine = AsyncEngine(engine_config(settings))
    inner = engine.engine
    progress(f"model {engine.model_name} loaded in {time.perf_counter() - t0:.1f}s "
             f"(device {inner.device}, dtype {str(inner.dtype).removeprefix('torch.')}, "
             f"max_model_len {engine.max_model_len}, attention {type(inner.backend).__name__})")
    return engine


def _stderr_progress(message: str) -> None:
    print(f"sluicegate: {message}", file=sys.stderr, flush=True)


async def _prepare(state: AppState, owns_engine: bool, progress: Callable[[str], None]) -> None:
    """Load (if the app owns its engine), start, and build the chat renderer; then turn ready on."""
    from sluicegate.gateway.chat_format import ChatRenderer
    from sluicegate.gateway.logprobs import TokenText

    engine: Any = state.engine
    if engine is None:
        engine = state.engine = await asyncio.to_thread(build_engine, state.settings, progress)
    if not getattr(engine, "is_running", False):
        await engine.start()
    renderer = await asyncio.to_thread(ChatRenderer, engine.tokenizer, engine.chat_template,
                                       state.settings.explicit_tool_format)
    state.renderer = renderer
    state.token_text = TokenText(engine.tokenizer)
    state.model_name = state.settings.served_model_name or engine.model_name
    state.extra_servers = await _start_grpc(state, progress)
    from sluicegate.gateway.mcp.runtime import start_mcp

    state.extra_servers += await start_mcp(state, progress)
    state.ready = True
    if owns_engine:
        tools = "rendered by its template" if renderer.renders_tools else "tool prompt injected"
        progress(f"engine started; tool calls: {renderer.tool_format.name} format, {tools}")
        scheme = "https" if state.settings.ssl_certfile else "http"
        progress(f"ready: serving {state.model_name} at {scheme}://{state.settings.host}:{state.settings.port}/v1")


async def _start_grpc(state: AppState, progress: Callable[[str], None]) -> list[Any]:
    """Hook for --grpc-port: `gateway.grpc_server.start(engine, settings, model_name)` is awaited and
    returns a handle with `async stop()`, called at shutdown. Absent module: a warning, HTTP goes on."""
    if state.settings.grpc_port is None:
        return []
    try:
        grpc_server = importlib.import_module("sluicegate.gateway.grpc_server")
    except ImportError as exc:
        progress(f"warning: --grpc-port given but the gRPC server is unavailable ({exc}); serving HTTP only")
        return []
    handle = await grpc_server.start(state.engine, state.settings, state.model_name)
    progress(f"gRPC listening on {state.settings.host}:{state.settings.grpc_port}")
    return [handle]


def create_app(settings: ServeSettings | None = None, engine: Any | None = None,
               progress: Callable[[str], None] | None = None) -> FastAPI:
    """The gateway app. With `engine`, the app serves it and leaves its lifetime to the caller
    (tests share one engine across apps); without, the app loads and owns one."""
    settings = settings or ServeSettings()
    state = AppState(settings=settings, metrics=Metrics(), engine=engine)
    report = progress or _stderr_progress
    owns_engine = engine is None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(_prepare(state, owns_engine, report))
        loader.add_done_callback(lambda t: _on_loaded(state, t, report))
        try:
            yield
        finally:
            state.ready = False
            state.draining = True
            loader.cancel()
            await asyncio.gather(loader, return_exceptions=True)
            for server in state.extra_servers:
                await server.stop()
            if owns_engine and state.engine is not None:
                await state.engine.shutdown()

    app = FastAPI(title="sluicegate", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.sg = state
    errors.install_error_handlers(app)
    _install_engine_error_handlers(app, settings)
    _include_routes(app)
    app.add_middleware(RequestMetricsMiddleware, metrics=state.metrics)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=True,
                           allow_methods=["*"], allow_headers=["*"])
    return app


def _on_loaded(state: AppState, task: asyncio.Task[None], report: Callable[[str], None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.error("loading the model failed", exc_info=exc)
        report(f"error: loading the model failed: {state.load_error}")


def _include_routes(app: FastAPI) -> None:
    from sluicegate.gateway.routes import chat, completions, health, models

    for module in (chat, completions, models, health):
        app.include_router(module.router)
    from sluicegate.gateway.mcp.endpoint import mount_mcp

    mount_mcp(app)


def _install_engine_error_handlers(app: FastAPI, settings: ServeSettings) -> None:
    """GrammarError / InvalidRequestError raised while building a request -> 400 (not 500)."""
    from sluicegate.engine.params import InvalidRequestError
    from sluicegate.grammars.backend import GrammarError

    async def handle(_: Request, exc: Exception) -> JSONResponse:
        mapped = errors.from_engine_error(exc, settings.retry_after_s) or errors.server_error(str(exc))
        return mapped.response()

    app.add_exception_handler(InvalidRequestError, handle)
    app.add_exception_handler(GrammarError, handle)
