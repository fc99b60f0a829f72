"""One set of live servers for the reliability tests (127.0.0.1, one background event loop):

    main      the default model, no API key
    keyed     the same engine behind an API key (log-capture tests)
    cors      the same engine with one allowed CORS origin
    tight     a second engine over the same weights whose grammar compiles time out at once

Several apps share an engine only inside one event loop (the engine delivers outputs to the loop
that started it), so they are all served by one loop here, as in tests/integration/conftest.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port
from tests.live_server import shutdown_engines, wait_ready

API_KEY = "sk-reliability-7Qz1X9"
CORS_ORIGIN = "https://allowed.example"


@dataclass
class Servers:
    engine: Any  # the main AsyncEngine
    tight_engine: Any
    urls: dict[str, str] = field(default_factory=dict)
    model: str = ""

    @property
    def url(self) -> str:
        return self.urls["main"]

    def wait_idle(self, engine: Any | None = None, timeout: float = 60.0) -> None:
        """Until no request is left (aborts land asynchronously); then integrity and KV usage 0."""
        engine = engine or self.engine
        deadline = time.monotonic() + timeout
        while engine.engine.requests or engine._queues:
            assert time.monotonic() < deadline, f"engine not idle: {engine.stats()}"
            time.sleep(0.05)
        engine.check_integrity()
        assert engine.stats().kv_usage == 0.0


def _engines() -> tuple[Any, Any]:
    from sluicegate.engine.async_engine import AsyncEngine
    from sluicegate.engine.config import (
        CacheConfig,
        EngineConfig,
        GrammarConfig,
        resolve_device,
        resolve_dtype,
    )
    from sluicegate.engine.models.loader import load_model

    config = EngineConfig(cache=CacheConfig(kv_cache_memory_gb=0.25))
    device = resolve_device(config.model.device)
    loaded = load_model(config.model.model, resolve_dtype(config.model.dtype, device), device)  # shared by both
    main = AsyncEngine(config, loaded=loaded)
    tight = AsyncEngine(EngineConfig(cache=CacheConfig(num_blocks=64), grammar=GrammarConfig(compile_timeout_s=0.001)),
                        loaded=loaded)
    return main, tight


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    import uvicorn

    from sluicegate.gateway.app import create_app
    from sluicegate.gateway.settings import ServeSettings

    main, tight = _engines()
    out = Servers(engine=main, tight_engine=tight)
    quiet = {"progress": lambda _: None}
    apps = {
        "main": create_app(ServeSettings(), engine=main, **quiet),
        "keyed": create_app(ServeSettings(api_key=API_KEY), engine=main, **quiet),
        "cors": create_app(ServeSettings(cors_origins=(CORS_ORIGIN,)), engine=main, **quiet),
        "tight": create_app(ServeSettings(), engine=tight, **quiet),
    }
    configs = []
    for name, app in apps.items():
        port = free_port()
        out.urls[name] = f"http://127.0.0.1:{port}"
        configs.append(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                      timeout_graceful_shutdown=5, backlog=2048))
    loop = asyncio.new_event_loop()
    running = [uvicorn.Server(c) for c in configs]

    async def serve_all() -> None:
        await asyncio.gather(*(s.serve() for s in running))

    thread = threading.Thread(target=loop.run_until_complete, args=(serve_all(),), daemon=True)
    thread.start()
    for url in out.urls.values():
        wait_ready(url)
    out.model = str(httpx.get(f"{out.url}/v1/models").json()["data"][0]["id"])
    try:
        yield out
    finally:
        for s in running:
            s.should_exit = True
        thread.join(timeout=30)
        if not loop.is_running():
            loop.run_until_complete(shutdown_engines(main, tight))
            loop.close()




@pytest.fixture
def idle(servers: Servers) -> Iterator[Servers]:
    """After the test: nothing left in either engine, no KV block in use, integrity holds."""
    yield servers
    servers.wait_idle()
    servers.wait_idle(servers.tight_engine)
