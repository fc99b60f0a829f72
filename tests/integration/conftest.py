"""Live servers on 127.0.0.1 for the HTTP tests: one real AsyncEngine (the default model), served by
several apps in one background event loop (the engine's outputs are delivered to that loop):

    main       no API key, the engine everything shares
    keyed      the same engine behind an API key (401 tests)
    full       a second AsyncEngine over the same loaded weights whose queue takes nothing (429 tests)

Started once per session; tests talk to them with real clients (openai, httpx, langchain-openai).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.live_server import shutdown_engines, wait_ready

API_KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServers:
    engine: Any
    urls: dict[str, str] = field(default_factory=dict)
    loop: asyncio.AbstractEventLoop | None = None
    servers: list[Any] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.urls["main"]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no request is running or waiting (aborts are asynchronous), then check integrity."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.engine.stats()
            if stats.num_running == 0 and stats.num_waiting == 0:
                break
            assert time.monotonic() < deadline, f"engine not idle: {stats}"
            time.sleep(0.05)
        self.engine.check_integrity()


def _build_engines() -> tuple[Any, Any]:
    from sluicegate.engine.async_engine import AsyncEngine
    from sluicegate.engine.config import (
        CacheConfig,
        EngineConfig,
        SchedulerConfig,
        resolve_device,
        resolve_dtype,
    )
    from sluicegate.engine.models.loader import load_model

    config = EngineConfig(cache=CacheConfig(kv_cache_memory_gb=0.25), scheduler=SchedulerConfig(max_num_seqs=64))
    device = resolve_device(config.model.device)
    loaded = load_model(config.model.model, resolve_dtype(config.model.dtype, device), device)  # shared by both
    main = AsyncEngine(config, loaded=loaded)
    full = AsyncEngine(EngineConfig(cache=CacheConfig(num_blocks=64), scheduler=SchedulerConfig(max_waiting=0)),
                       loaded=loaded)
    return main, full


@pytest.fixture(scope="session")
def live() -> Iterator[LiveServers]:
    import uvicorn

    from sluicegate.gateway.app import create_app
    from sluicegate.gateway.settings import ServeSettings

    main_engine, full_engine = _build_engines()
    servers = LiveServers(engine=main_engine)
    apps = {
        "main": create_app(ServeSettings(), engine=main_engine, progress=lambda _: None),
        "keyed": create_app(ServeSettings(api_key=API_KEY), engine=main_engine, progress=lambda _: None),
        "full": create_app(ServeSettings(), engine=full_engine, progress=lambda _: None),
    }
    configs = {}
    for name, app in apps.items():
        port = free_port()
        servers.urls[name] = f"http://127.0.0.1:{port}"
        configs[name] = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                       access_log=False, timeout_graceful_shutdown=5)
    loop = asyncio.new_event_loop()
    servers.loop = loop
    servers.servers = [uvicorn.Server(c) for c in configs.values()]

    async def run_all() -> None:
        await asyncio.gather(*(s.serve() for s in servers.servers))

    thread = threading.Thread(target=loop.run_until_complete, args=(run_all(),), daemon=True)
    thread.start()
    for url in servers.urls.values():
        wait_ready(url)
    try:
        yield servers
    finally:
        for s in servers.servers:
            s.should_exit = True
        thread.join(timeout=30)
        if not loop.is_running():
            loop.run_until_complete(shutdown_engines(main_engine, full_engine))
            loop.close()




@pytest.fixture(scope="session")
def model_name(live: LiveServers) -> str:
    return str(httpx.get(f"{live.url}/v1/models").json()["data"][0]["id"])


@pytest.fixture
def client(live: LiveServers) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def async_client(live: LiveServers) -> Any:
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=f"{live.url}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture
def idle_engine(live: LiveServers) -> Iterator[LiveServers]:
    """After the test: nothing left running and no KV block leaked."""
    yield live
    live.wait_idle()


@pytest.fixture(scope="session")
def model_tokenizer(live: LiveServers) -> Any:
    return live.engine.tokenizer
