"""A stdio MCP server that dies: `crash` exits the process mid-call. With CRASH_ON_START=1 it exits
before answering anything (a server that can never start)."""

from __future__ import annotations

import os
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("crashy")


@server.tool(description="Say hello.")
def hello(name: str) -> str:
    return f"hello {name} from pid {os.getpid()}"


@server.tool(description="Kill this server's process in the middle of the call.")
def crash() -> str:
    sys.stdout.flush()
    os._exit(3)


if __name__ == "__main__":
    if os.environ.get("CRASH_ON_START") == "1":
        print("crashy: refusing to start", file=sys.stderr)
        sys.exit(2)
    server.run("stdio")
