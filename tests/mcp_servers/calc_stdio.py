"""A stdio MCP server (the official SDK's MCPServer): arithmetic, an erroring tool, and a tool that
changes the tool list (for the hub's refresh)."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("calc")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> str:
    return str(a + b)


@server.tool(description="Repeat a text back.")
def echo(text: str) -> str:
    return text


@server.tool(description="Always fails with the given message.")
def fail(message: str) -> str:
    raise ValueError(message)


def secret() -> str:
    """Only listed after `unlock` ran."""
    return "the secret is 42"


@server.tool(description="Adds the `secret` tool to this server's tool list.")
async def unlock(ctx: Context) -> str:
    server.add_tool(secret, name="secret", description="Tell the secret.")
    try:  # legacy (handshake-era) sessions get notifications/tools/list_changed
        await ctx.session.send_tool_list_changed()
    except Exception:  # modern sessions publish through subscriptions/listen instead
        await ctx.notify_tools_changed()
    return "unlocked"


if __name__ == "__main__":
    server.run("stdio")
