"""POST /v1/chat/completions with hosted MCP tools: the request, the response and the stream.

Request (a sluicegate extension of OpenAI's chat API): `tools` may hold, beside function tools,
    {"type": "mcp", "server_label": "calc", "allowed_tools": ["add"]}      # allowed_tools optional
naming a server of the operator's --mcp-config. Its tools are offered to the model as function
tools named `calc__add` (inputSchema as parameters); tool_choice may name one of them. The gateway
runs the loop of gateway/mcp/loop.py: the model's calls to hosted tools are executed here, and only
calls to the client's own function tools come back as `tool_calls` (finish_reason "tool_calls").

Response: the usual chat.completion, plus `choices[0].message.mcp_calls`: the hosted calls made, in
order, each
    {"id", "type": "mcp_call", "round", "server_label", "name" (the tool's MCP name),
     "tool" ("server__tool"), "arguments" (JSON text), "status" ("completed" | "failed"),
     "output" (the text the model was given), "is_error" (the tool answered isError, or the call
     failed), "error" (why the gateway got no usable answer: down, timeout, crash, garbage; else
     null), "duration_ms"}
`content` is the text of every round, joined; `usage` sums every round's engine request.

Stream: ordinary chunks for content (and for client tool calls, each in one delta), plus chunks
whose delta is {"mcp_calls": [call]}: once when a hosted call starts ("status": "in_progress",
"output": null) and once when it ends (completed/failed, with its output).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sluicegate.gateway import errors
from sluicegate.gateway.generation import ClientDisconnected, unless_disconnected
from sluicegate.gateway.mcp.hub import UnknownServerError
from sluicegate.gateway.mcp.loop import (
    CallEvent,
    ClientCalls,
    Content,
    Finished,
    LoopEvent,
    LoopPlan,
    McpCall,
    Totals,
    run_loop,
)
from sluicegate.gateway.mcp.tools import HostedTool
from sluicegate.gateway.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    FunctionDef,
    PromptTokensDetails,
    ResponseMessage,
    Tool,
    ToolCall,
    Usage,
)
from sluicegate.gateway.state import AppState
from sluicegate.gateway.streaming import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, chat_chunk_payload, sse_event


def plan_loop(state: AppState, body: ChatCompletionRequest) -> LoopPlan:
    """The hosted tools the request names, beside its function tools; 400 for what cannot run."""
    runtime = getattr(state, "mcp", None)
    hub = getattr(runtime, "hub", None)
    if hub is None:
        raise errors.bad_request("This server hosts no MCP servers: start it with --mcp-config to use "
                                 "tools of type 'mcp'.", param="tools", code="mcp_not_configured")
    if (body.n or 1) > 1:
        raise errors.bad_request("n must be 1 with MCP tools", param="n")
    if body.logprobs:
        raise errors.bad_request("logprobs are not supported with MCP tools", param="logprobs")
    hosted: dict[str, HostedTool] = {}
    for ref in body.mcp_tools or []:
        try:
            tools = hub.tools_of(ref.server_label, ref.allowed_tools)
        except UnknownServerError:
            raise errors.bad_request(f"No MCP server labelled {ref.server_label!r} is configured "
                                     f"(configured: {sorted(hub.connections)})", param="tools") from None
        if not tools:
            status = hub.status()[ref.server_label]
            raise errors.APIError(503, f"MCP server {ref.server_label!r} offers no tools now "
                                  f"(status {status['status']}: {status['error']})",
                                  code="mcp_server_unavailable", headers={"Retry-After": "1"})
        hosted.update((t.name, t) for t in tools)
    functions = list(body.tools or [])
    clash = sorted({t.function.name for t in functions} & set(hosted))
    if clash:
        raise errors.bad_request(f"function tools {clash} have the names of hosted MCP tools", param="tools")
    tools = [*functions, *(Tool(type="function", function=FunctionDef(name=t.name, description=t.description,
                                                                      parameters=t.parameters))
                           for t in hosted.values())]
    return LoopPlan(hub=hub, tools=tuple(tools), hosted=hosted, max_rounds=hub.config.loop.max_rounds)


async def mcp_chat(body: ChatCompletionRequest, request: Request, state: AppState) -> Response:
    plan = plan_loop(state, body)
    ctx = _Ctx(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=state.model_name,
               include_usage=bool(body.stream and body.stream_options and body.stream_options.include_usage))
    events = run_loop(state, request, body, plan, ctx.id)
    if body.stream:
        try:  # wait for round 0's first event: its refusals (400, 429) keep their HTTP status
            first = await unless_disconnected(request, anext(events))
        except ClientDisconnected:
            await events.aclose()  # type: ignore[attr-defined]
            return Response(status_code=499)
        return StreamingResponse(_sse(state, ctx, first, events), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    try:
        result = await unless_disconnected(request, _collect(events))
    except ClientDisconnected:
        return Response(status_code=499)
    content, calls, client, finished = result
    message = ResponseMessage(content=content or (None if client else ""), tool_calls=list(client) or None)
    completion = ChatCompletion(id=ctx.id, created=ctx.created, model=ctx.model, usage=_usage(finished.usage),
                                choices=[ChatChoice(index=0, message=message, finish_reason=finished.finish_reason)])
    _observe(state, finished.usage)
    data = completion.model_dump(mode="json")
    data["choices"][0]["message"]["mcp_calls"] = [c.as_dict() for c in calls]
    return JSONResponse(data)


class _Ctx:
    def __init__(self, id: str, created: int, model: str, include_usage: bool) -> None:
        self.id, self.created, self.model, self.include_usage = id, created, model, include_usage

    def chunk(self, delta: Delta, finish_reason: str | None = None, extra: dict[str, Any] | None = None,
              usage: Usage | None = None) -> str:
        choices = [ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)] if usage is None else []
        payload = chat_chunk_payload(ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                                         choices=choices, usage=usage), self.include_usage)
        if extra:
            payload["choices"][0]["delta"].update(extra)
        return sse_event(payload)


async def _collect(events: AsyncGenerator[LoopEvent, None]) -> tuple[str, list[McpCall], tuple[ToolCall, ...], Finished]:
    content: list[str] = []
    calls: dict[str, McpCall] = {}
    client: tuple[ToolCall, ...] = ()
    async with aclosing(events) as stream:
        async for ev in stream:
            if isinstance(ev, Content):
                content.append(ev.text)
            elif isinstance(ev, CallEvent):
                calls[ev.call.id] = ev.call  # the finished record replaces the started one
            elif isinstance(ev, ClientCalls):
                client = ev.calls
            elif isinstance(ev, Finished):
                return "".join(content), list(calls.values()), client, ev
    raise AssertionError("the loop ended without Finished")  # pragma: no cover


def _client_delta(calls: tuple[ToolCall, ...]) -> Delta:
    return Delta(tool_calls=[DeltaToolCall(index=i, id=c.id, type="function",
                                           function=DeltaFunction(name=c.function.name,
                                                                  arguments=c.function.arguments))
                             for i, c in enumerate(calls)])


async def _prepend(first: LoopEvent, events: AsyncGenerator[LoopEvent, None]) -> AsyncGenerator[LoopEvent, None]:
    yield first
    async with aclosing(events) as stream:
        async for ev in stream:
            yield ev


async def _sse(state: AppState, ctx: _Ctx, first: LoopEvent, events: AsyncGenerator[LoopEvent, None]) -> AsyncGenerator[str, None]:
    yield ctx.chunk(Delta(role="assistant", content=""))
    try:
        async with aclosing(_prepend(first, events)) as stream:
            async for ev in stream:
                if isinstance(ev, Content):
                    yield ctx.chunk(Delta(content=ev.text))
                elif isinstance(ev, CallEvent):
                    yield ctx.chunk(Delta(), extra={"mcp_calls": [ev.call.as_dict()]})
                elif isinstance(ev, ClientCalls):
                    yield ctx.chunk(_client_delta(ev.calls))
                elif isinstance(ev, Finished):
                    yield ctx.chunk(Delta(), finish_reason=ev.finish_reason)
                    _observe(state, ev.usage)
                    if ctx.include_usage:
                        yield ctx.chunk(Delta(), usage=_usage(ev.usage))
    except Exception as exc:  # the stream began with 200: report in-band, as the chat route does
        mapped = errors.from_engine_error(exc) or errors.server_error(f"{type(exc).__name__}: {exc}")
        yield sse_event(mapped.body())
    yield DONE


def _usage(totals: Totals) -> Usage:
    return Usage(prompt_tokens=totals.prompt_tokens, completion_tokens=totals.completion_tokens,
                 total_tokens=totals.prompt_tokens + totals.completion_tokens,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=totals.cached_tokens))


def _observe(state: AppState, totals: Totals) -> None:
    state.metrics.observe_usage(totals.prompt_tokens, totals.cached_tokens, totals.completion_tokens)
