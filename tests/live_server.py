"""Helpers shared by the live-server fixtures (tests/integration, tests/reliability)."""

from __future__ import annotations

import time
from typing import Any

import httpx


async def shutdown_engines(*engines: Any) -> None:
    for engine in engines:
        await engine.shutdown()


def wait_ready(url: str, timeout: float = 180.0) -> None:
    """Poll /ready until the app says it is serving (the model loads in the lifespan)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout}s")
