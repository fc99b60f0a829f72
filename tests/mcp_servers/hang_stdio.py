"""A stdio MCP server that hangs: `sleep` answers late, `stall` never. With HANG_ON_START=1 it never
answers the handshake (a server that starts but never becomes usable)."""

from __future__ import annotations

import asyncio
import os
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("hang")


@server.tool(description="Sleep for the given number of seconds, then answer.")
async def sleep(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return f"slept {seconds}s"


@server.tool(description="Never answer.")
async def stall() -> str:
    await asyncio.sleep(3600)
    return "too late"


@server.tool(description="Answer at once.")
def ping() -> str:
    return "pong"


if __name__ == "__main__":
    if os.environ.get("HANG_ON_START") == "1":
        time.sleep(3600)
    server.run("stdio")
