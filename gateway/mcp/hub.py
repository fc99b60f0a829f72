"""McpHub: every hosted MCP server of the operator's config, their tools under one namespace, and
calls with a per-call timeout whose failures become clear error results (never exceptions)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from sluicegate.gateway.mcp.config import McpConfig
from sluicegate.gateway.mcp.connection import ServerConnection, ToolCallError, describe
from sluicegate.gateway.mcp.tools import HostedTool, result_text


@dataclass(frozen=True)
class CallOutcome:
    """What one hosted call gave: the text fed back to the model, and whether it is an error.

    error: the gateway-side failure (server down, timeout, crash, malformed answer), else None.
    is_error: error is set, or the tool itself answered with isError.
    """

    output: str
    is_error: bool
    error: str | None
    duration_ms: int


class UnknownServerError(LookupError):
    """A request named a server label the config does not have."""


class McpHub:
    def __init__(self, config: McpConfig, errlog: TextIO | None = None) -> None:
        self.config = config
        self.connections = {s.label: ServerConnection(s, config.loop, errlog, self._tools_changed)
                            for s in config.servers}
        self._listeners: list[Callable[[], None]] = []

    async def start(self) -> None:
        """Start every server; wait (at most each one's connect timeout) for its first attempt, so the
        first requests see the tools. Servers that failed are retried in the background."""
        for conn in self.connections.values():
            conn.start()
        await asyncio.gather(*(c.wait_first_attempt() for c in self.connections.values()))

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.connections.values()))

    def on_tools_changed(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _tools_changed(self) -> None:
        for listener in self._listeners:
            listener()

    def status(self) -> dict[str, dict[str, Any]]:
        return {label: {"status": c.status, "error": c.error, "tools": len(c.tools), "restarts": c.restarts,
                        "transport": c.config.transport} for label, c in self.connections.items()}

    def all_tools(self) -> list[HostedTool]:
        return [t for c in self.connections.values() for t in c.tools]

    def tools_of(self, server: str, allowed: Sequence[str] | None = None) -> list[HostedTool]:
        """A server's tools (only `allowed`, by their MCP names or qualified names, when given)."""
        conn = self.connections.get(server)
        if conn is None:
            raise UnknownServerError(server)
        if allowed is None:
            return list(conn.tools)
        wanted = set(allowed)
        return [t for t in conn.tools if t.tool in wanted or t.name in wanted]

    def find(self, name: str) -> HostedTool | None:
        for tool in self.all_tools():
            if tool.name == name:
                return tool
        return None

    async def call(self, tool: HostedTool, arguments_json: str) -> CallOutcome:
        """Call a hosted tool. Never raises (except cancellation): every failure is an error outcome."""
        start = time.perf_counter()
        conn = self.connections[tool.server]
        timeout = conn.config.call_timeout_s or self.config.loop.call_timeout_s

        def outcome(output: str, is_error: bool, error: str | None) -> CallOutcome:
            return CallOutcome(output, is_error, error, int((time.perf_counter() - start) * 1000))

        try:
            arguments = _arguments_object(arguments_json)
            result = await conn.call(tool.tool, arguments, timeout)
        except ToolCallError as exc:
            return outcome(f"Error: {exc}", True, str(exc))
        except Exception as exc:  # an SDK failure we did not foresee: still one call's error
            message = f"MCP server {tool.server!r} failed on {tool.tool!r}: {describe(exc)}"
            return outcome(f"Error: {message}", True, message)
        text = result_text(result.content, result.structured_content, self.config.loop.max_result_chars)
        return outcome(text, bool(result.is_error), None)


def _arguments_object(arguments_json: str) -> dict[str, Any]:
    """The model's arguments (grammar-guaranteed JSON for the tool's schema) as tools/call wants them."""
    try:
        value = json.loads(arguments_json) if arguments_json.strip() else {}
    except ValueError as exc:
        raise ToolCallError(f"the arguments are not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ToolCallError("the arguments must be a JSON object")
    return value
