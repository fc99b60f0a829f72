"""A streamable-HTTP MCP server (the official SDK's MCPServer) on 127.0.0.1:PORT/mcp.

Usage: python weather_http.py PORT. `whoami` reports the X-Test-Token header the client sent, so
tests can check that the config's `headers` reach the server.
"""

from __future__ import annotations

import sys
from typing import Annotated

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

server = MCPServer("weather", log_level="WARNING")


@server.tool(description="Today's weather forecast for a city.")
def get_forecast(city: Annotated[str, Field(max_length=20)]) -> str:
    return f"Sunny in {city}, 21 C"


@server.tool(description="The X-Test-Token header of this request.")
def whoami(ctx: Context) -> str:
    request = ctx.request_context.request  # the starlette Request on the HTTP transport
    headers = getattr(request, "headers", None) or {}
    return str(headers.get("x-test-token", "<none>"))


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
