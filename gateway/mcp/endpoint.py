"""The gateway as an MCP server: streamable HTTP at /mcp, behind the same API key as /v1.

Tools it offers:
    every hosted tool, as `server__tool` (the call is proxied to its server, with its timeout)
    chat      {"messages": [{"role", "content"}...] | "prompt": str, "max_tokens", "temperature"}
              -> the served model's reply (its chat template applied)
    generate  {"prompt": str, "max_tokens", "temperature"} -> a raw text completion of the prompt
Model errors (bad values, a prompt too long) come back as isError results, as tool errors should.
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sluicegate import __version__
from sluicegate.gateway import errors
from sluicegate.gateway.mcp.hub import McpHub
from sluicegate.gateway.state import AppState

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_SAMPLING_PROPS = {
    "max_tokens": {"type": "integer", "minimum": 1, "description": "most tokens to generate (default 256)"},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2, "description": "default 0 (greedy)"},
}
CHAT_SCHEMA = {
    "type": "object",
    "properties": {
        "messages": {"type": "array", "description": "the conversation, oldest first",
                     "items": {"type": "object", "required": ["role", "content"],
                               "properties": {"role": {"enum": ["system", "user", "assistant"]},
                                              "content": {"type": "string"}}}},
        "prompt": {"type": "string", "description": "a single user message (instead of messages)"},
        **_SAMPLING_PROPS,
    },
}
GENERATE_SCHEMA = {"type": "object", "required": ["prompt"],
                   "properties": {"prompt": {"type": "string"}, **_SAMPLING_PROPS}}


class McpEndpoint:
    """The low-level SDK server and its streamable-HTTP session manager, run by one owner task."""

    def __init__(self, state: AppState, hub: McpHub | None) -> None:
        from mcp.server.lowlevel import Server
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
        from mcp.server.transport_security import TransportSecuritySettings

        self.state, self.hub = state, hub
        self.server: Any = Server("sluicegate", version=__version__, on_list_tools=self._list_tools,
                                  on_call_tool=self._call_tool,
                                  instructions="Tools of the MCP servers this gateway hosts, and the served model.")
        security = None
        if state.settings.host in _LOOPBACK:  # a loopback server: refuse DNS-rebinding requests, as the SDK does
            security = TransportSecuritySettings(
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
        self.manager: Any = StreamableHTTPSessionManager(self.server, security_settings=security)
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mcp-endpoint")
        await asyncio.wait({self._task, asyncio.ensure_future(self._started.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._task.result()  # it failed to start: raise why

    async def _run(self) -> None:
        async with self.manager.run():  # the SDK's task group: entered and left by this task
            self._started.set()
            await self._stop.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # --- handlers ------------------------------------------------------------------------------

    async def _list_tools(self, ctx: Any, params: Any) -> Any:
        import mcp_types as types

        tools = [types.Tool(name="chat", description=f"Chat with the served model ({self.state.model_name}).",
                            input_schema=CHAT_SCHEMA),
                 types.Tool(name="generate", description="Complete a raw text prompt with the served model.",
                            input_schema=GENERATE_SCHEMA)]
        for t in self.hub.all_tools() if self.hub else []:
            tools.append(types.Tool(name=t.name, description=t.description, input_schema=t.parameters))
        return types.ListToolsResult(tools=tools)

    async def _call_tool(self, ctx: Any, params: Any) -> Any:
        import json

        import mcp_types as types

        args = dict(params.arguments or {})
        if params.name in ("chat", "generate"):
            try:
                text = await self._model_text(params.name, args)
            except Exception as exc:
                mapped = errors.from_engine_error(exc)
                message = mapped.message if mapped is not None else f"{type(exc).__name__}: {exc}"
                return _result(message, True)
            return _result(text, False)
        tool = self.hub.find(params.name) if self.hub else None
        if tool is None:
            return _result(f"Unknown tool: {params.name}", True)
        outcome = await self.hub.call(tool, json.dumps(args)) if self.hub else None
        assert outcome is not None
        return types.CallToolResult(content=[types.TextContent(type="text", text=outcome.output)],
                                    is_error=outcome.is_error)

    async def _model_text(self, tool: str, args: dict[str, Any]) -> str:
        from sluicegate.engine.params import SamplingParams

        state = self.state
        if not state.accepting():
            raise errors.not_ready(state.draining)
        assert state.engine is not None and state.renderer is not None
        max_tokens, temperature = int(args.get("max_tokens", 256)), float(args.get("temperature", 0.0))
        if tool == "chat":
            prompt_ids = _chat_prompt(state, args)
        else:
            prompt_ids = list(state.engine.tokenizer(str(args.get("prompt", "")), add_special_tokens=False)["input_ids"])
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
        parts: list[str] = []
        async with aclosing(state.engine.generate(prompt_ids, params)) as stream:
            async for out in stream:
                parts.append(out.new_text)
                if out.finished and out.finish_reason == "error":
                    raise RuntimeError(out.error or "generation failed")
        return "".join(parts)


def _chat_prompt(state: AppState, args: dict[str, Any]) -> list[int]:
    from sluicegate.gateway.protocol import ChatCompletionRequest

    messages = args.get("messages") or [{"role": "user", "content": str(args.get("prompt", ""))}]
    try:
        body = ChatCompletionRequest(model=state.model_name, messages=messages)
    except ValueError as exc:
        raise errors.bad_request(f"invalid messages: {exc}") from exc
    assert state.renderer is not None
    return list(state.renderer.encode(state.renderer.render(body.messages, None)))


def _result(text: str, is_error: bool) -> Any:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


class McpRoute:
    """The ASGI app at /mcp: API key (as /v1), readiness, then the SDK's session manager."""

    def __init__(self, state: AppState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        key = state.settings.api_key
        headers = Headers(scope=scope)
        if key is not None and not errors.api_key_matches(key, headers.get("authorization"),
                                                          headers.get("x-api-key")):
            await errors.unauthorized().response()(scope, receive, send)
            return
        runtime = getattr(state, "mcp", None)
        if runtime is None or not state.accepting():
            error = errors.not_ready(state.draining)
            if state.ready and runtime is None:
                error = errors.APIError(404, "MCP is not available: install the MCP SDK "
                                        "(pip install 'sluicegate[mcp]')", code="mcp_not_installed")
            await error.response()(scope, receive, send)
            return
        await runtime.endpoint.manager.handle_request(scope, receive, send)


def mount_mcp(app: FastAPI) -> None:
    """/mcp on the app (answers 503 until the runtime has started, 404 when the SDK is missing)."""
    app.router.routes.append(Route("/mcp", McpRoute(app.state.sg), methods=["GET", "POST", "DELETE"],
                                   include_in_schema=False))
