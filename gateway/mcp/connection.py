"""One hosted MCP server, supervised: connect, list its tools, keep the list fresh, restart it when
it dies, stop it on shutdown.

A single task (`_supervise`) owns the SDK `Client` for its whole life: the SDK's anyio task groups
must be entered and left by the same task. Request handlers only borrow the live client to call a
tool. A server that cannot start, dies (crash, closed pipe, failed refresh) or stops answering is
marked down with the reason, and restarted with a backoff (0.5 s doubling to 30 s); meanwhile calls
to its tools fail at once with that reason, and the gateway keeps serving everything else.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import Any, TextIO

from sluicegate.gateway.mcp.config import LoopConfig, McpServerConfig
from sluicegate.gateway.mcp.tools import HostedTool, hosted_tools

log = logging.getLogger("sluicegate.mcp")

_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 30.0


class ToolCallError(Exception):
    """A hosted tool call that got no usable answer (server down, timeout, crash, garbage)."""


@asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[None]:
    """asyncio.timeout (3.11+) on Python 3.10 too: cancel the current task after `seconds` and raise
    TimeoutError. Unlike wait_for, the body stays in this task (the SDK's task groups need that)."""
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            yield
        return
    task = asyncio.current_task()
    assert task is not None
    fired = False

    def fire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, fire)
    try:
        yield
    except asyncio.CancelledError:
        if fired:
            raise TimeoutError from None
        raise
    finally:
        handle.cancel()


def describe(exc: BaseException) -> str:
    """A one-line reason, unwrapping the SDK's exception groups to their first leaf."""
    while getattr(exc, "exceptions", None):  # an ExceptionGroup (named by duck type: Python 3.10 has none)
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ServerConnection:
    """status: "starting" → "up" ⇄ "down" → "stopped". `tools` is the last list seen (kept while down,
    so a request naming the server still renders the same prompt and gets a clear call error)."""

    def __init__(self, config: McpServerConfig, loop: LoopConfig, errlog: TextIO | None = None,
                 on_tools_changed: Callable[[], None] | None = None) -> None:
        self.config = config
        self.loop = loop
        self.status = "starting"
        self.error: str | None = None
        self.tools: tuple[HostedTool, ...] = ()
        self.restarts = 0
        self._errlog = errlog or sys.stderr
        self._on_tools_changed = on_tools_changed or (lambda: None)
        self._client: Any | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._dead_reason: str | None = None
        self._refresh_wanted = False
        self._transport_error: str | None = None  # last unparseable message, named in timeouts
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return self.config.label

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"mcp-server-{self.label}")

    async def wait_first_attempt(self) -> None:
        await self._first_attempt.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        self.status = "stopped"

    def request_refresh(self) -> None:
        self._refresh_wanted = True
        self._wake.set()

    # --- supervision ---------------------------------------------------------------------------

    async def _supervise(self) -> None:
        backoff = _BACKOFF_START_S
        while not self._stopping:
            try:
                await self._run_once()
                backoff = _BACKOFF_START_S  # it was up: the next failure starts the backoff over
            except Exception as exc:
                self._mark_down(describe(exc))
            finally:
                self._client = None
                self._first_attempt.set()
            if self._stopping:
                return
            self.restarts += 1
            try:
                await asyncio.wait_for(self._wait_stop(), backoff)
            except TimeoutError:
                pass
            backoff = min(backoff * 2, _BACKOFF_MAX_S)

    async def _wait_stop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            await self._wake.wait()

    def _mark_down(self, reason: str) -> None:
        if self._stopping:
            return
        self.status, self.error = "down", reason
        log.warning("MCP server %r is down: %s (restarting)", self.label, reason)
        print(f"sluicegate: MCP server {self.label!r} is down: {reason} (restarting)", file=self._errlog)

    async def _run_once(self) -> None:
        self._dead_reason, self._transport_error = None, None
        async with AsyncExitStack() as stack:
            try:
                async with deadline(self.loop.connect_timeout_s):
                    client = await stack.enter_async_context(self._new_client())
                    await self._list_tools(client)
            except TimeoutError:
                raise ToolCallError(f"no answer within {self.loop.connect_timeout_s:g}s "
                                    "(start, handshake and tools/list)") from None
            self._client, self.status, self.error = client, "up", None
            self._first_attempt.set()
            log.info("MCP server %r up: %d tools", self.label, len(self.tools))
            await self._watch(client)

    async def _watch(self, client: Any) -> None:
        """Until stop (return) or death (raise): refresh the tool list every refresh_interval_s or
        when the server says it changed; a failed refresh means the server is gone or stuck."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.loop.refresh_interval_s)
            except TimeoutError:
                self._refresh_wanted = True
            self._wake.clear()
            if self._stopping:
                return
            if self._dead_reason is not None:
                raise ToolCallError(self._dead_reason)
            if self._refresh_wanted:
                self._refresh_wanted = False
                try:
                    async with deadline(self.loop.call_timeout_s):
                        await self._list_tools(client)
                except Exception as exc:
                    raise ToolCallError(f"tools/list failed: {describe(exc)}") from exc

    async def _list_tools(self, client: Any) -> None:
        listed: list[Any] = []
        cursor: str | None = None
        for _ in range(100):  # a paginator that never ends cannot hang the refresh
            page = await client.list_tools(cursor=cursor)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if cursor is None:
                break
        tools = hosted_tools(self.label, listed)
        if tools != self.tools:
            self.tools = tools
            self._on_tools_changed()

    def _new_client(self) -> Any:
        from mcp import Client, StdioServerParameters

        cfg = self.config
        if cfg.command is not None:
            params = StdioServerParameters(command=cfg.command, args=list(cfg.args), env=dict(cfg.env) or None,
                                           cwd=cfg.cwd)
            from mcp.client.stdio import stdio_client

            transport: Any = stdio_client(params, errlog=self._errlog)
        else:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            assert cfg.url is not None
            http = create_mcp_http_client(headers=dict(cfg.headers) or None)
            transport = _OwningTransport(streamable_http_client(cfg.url, http_client=http), http)
        return Client(transport, cache=None, message_handler=self._on_message)

    async def _on_message(self, message: Any) -> None:
        """Server notifications and transport errors the SDK surfaces."""
        if isinstance(message, Exception):
            self._transport_error = describe(message)
            log.warning("MCP server %r sent an unusable message: %s", self.label, self._transport_error)
            return
        method = getattr(getattr(message, "root", message), "method", None)
        if method == "notifications/tools/list_changed":
            self.request_refresh()

    # --- calls ---------------------------------------------------------------------------------

    async def call(self, tool: str, arguments: dict[str, Any], timeout_s: float) -> Any:
        """tools/call -> the SDK's CallToolResult; ToolCallError when there is no usable answer."""
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED
        from pydantic import ValidationError

        client = self._client
        if client is None:
            raise ToolCallError(f"MCP server {self.label!r} is {self.status}"
                                + (f": {self.error}" if self.error else ""))
        try:
            async with deadline(timeout_s):
                return await client.call_tool(tool, arguments)
        except TimeoutError:
            hint = f" (it sent an unusable message: {self._transport_error})" if self._transport_error else ""
            raise ToolCallError(f"MCP server {self.label!r} did not answer {tool!r} within "
                                f"{timeout_s:g}s{hint}") from None
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                self._dead_reason = f"connection closed during a call of {tool!r}"
                self._wake.set()
                raise ToolCallError(f"MCP server {self.label!r} closed the connection during the call "
                                    "(crashed?); it is being restarted") from exc
            raise ToolCallError(f"MCP server {self.label!r} refused the call: {exc.message}") from exc
        except ValidationError as exc:
            raise ToolCallError(f"MCP server {self.label!r} returned a malformed result for {tool!r}: "
                                f"{exc.error_count()} validation errors, first: {exc.errors()[0]['msg']}") from exc


class _OwningTransport:
    """A streamable-HTTP transport that also closes the httpx client it was given."""

    def __init__(self, transport: Any, http_client: Any) -> None:
        self._transport = transport
        self._http = http_client
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Any:
        await self._stack.enter_async_context(self._http)
        return await self._stack.enter_async_context(self._transport)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)
