"""Start and stop of everything MCP in one app: the hosted servers (--mcp-config) and /mcp.

`start_mcp` is called from the app's start-up (after the engine runs) and returns the handles that
the app stops at shutdown, like the gRPC server's. Without the `mcp` package, /mcp answers 404 and
--mcp-config is an error (the operator asked for something that cannot run).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sluicegate.gateway.mcp.config import load_config
from sluicegate.gateway.mcp.endpoint import McpEndpoint
from sluicegate.gateway.mcp.hub import McpHub
from sluicegate.gateway.state import AppState


@dataclass
class McpRuntime:
    hub: McpHub | None
    endpoint: McpEndpoint

    async def stop(self) -> None:
        await self.endpoint.stop()
        if self.hub is not None:
            await self.hub.stop()  # stops the stdio servers' processes


def _hub_summary(hub: McpHub) -> str:
    parts = []
    for label, s in hub.status().items():
        state = f"{s['tools']} tools" if s["status"] == "up" else f"DOWN: {s['error']}"
        parts.append(f"{label} ({s['transport']}, {state})")
    return ", ".join(parts) or "none"


async def start_mcp(state: AppState, progress: Callable[[str], None]) -> list[Any]:
    path = getattr(state.settings, "mcp_config", None)
    if importlib.util.find_spec("mcp") is None:
        if path:
            raise RuntimeError("--mcp-config needs the MCP SDK: pip install 'sluicegate[mcp]'")
        return []
    hub = None
    if path:
        hub = McpHub(load_config(path))
        try:
            await hub.start()
        except BaseException:  # cancelled during start-up: no server process may outlive us
            await hub.stop()
            raise
        progress(f"MCP servers: {_hub_summary(hub)}")
    endpoint = McpEndpoint(state, hub)
    try:
        await endpoint.start()
    except BaseException:
        if hub is not None:
            await hub.stop()
        raise
    runtime = McpRuntime(hub, endpoint)
    state.mcp = runtime
    progress(f"MCP endpoint at http://{state.settings.host}:{state.settings.port}/mcp")
    return [runtime]
