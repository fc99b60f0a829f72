"""The bounded tool loop of one chat request with hosted MCP tools, as a stream of events.

    round 0 .. max_rounds-1:  generate (tool grammar on: every call's arguments match the tool's
                              inputSchema) → no call: the answer, done
                              → calls to hosted tools: run them (concurrently, each with its timeout),
                                append the assistant turn and the results (errors too) → next round
                              → any call to a client function tool: hand those calls to the client, done
    round max_rounds:         generate with tool_choice "none": the loop always ends with an answer

max_tokens bounds each round; a call cut by it never runs (the calls it completed do).
The request's tool_choice applies to round 0 only (forcing a call every round could never end);
later rounds are "auto". Both the SSE route and the JSON route consume these events, so a streamed
answer and a whole one always agree.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from fastapi import Request

from sluicegate.gateway import errors
from sluicegate.gateway.chat_output import new_call_id
from sluicegate.gateway.generation import merge, raise_for_output
from sluicegate.gateway.mcp.hub import CallOutcome, McpHub
from sluicegate.gateway.mcp.tools import HostedTool
from sluicegate.gateway.protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    Tool,
    ToolCall,
    ToolMessage,
)
from sluicegate.gateway.routes.submit import submit
from sluicegate.gateway.sampling import chat_grammar, chat_params, uses_tool_grammar
from sluicegate.gateway.state import AppState
from sluicegate.grammars.tool_formats import ContentDelta


@dataclass(frozen=True)
class McpCall:
    """One hosted tool call: the `mcp_calls` entries of the response (see docs in chat.py)."""

    id: str
    round: int
    server_label: str
    name: str  # the tool's name on its MCP server
    tool: str  # the name the model called: "server__tool"
    arguments: str
    status: str = "in_progress"  # "in_progress" | "completed" | "failed"
    output: str | None = None
    is_error: bool = False
    error: str | None = None
    duration_ms: int | None = None

    def finished(self, outcome: CallOutcome) -> McpCall:
        return replace(self, status="failed" if outcome.error else "completed", output=outcome.output,
                       is_error=outcome.is_error, error=outcome.error, duration_ms=outcome.duration_ms)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "mcp_call", "round": self.round, "server_label": self.server_label,
                "name": self.name, "tool": self.tool, "arguments": self.arguments, "status": self.status,
                "output": self.output, "is_error": self.is_error, "error": self.error,
                "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class CallEvent:
    call: McpCall  # in_progress when it starts, completed/failed when it ends


@dataclass(frozen=True)
class ClientCalls:
    calls: tuple[ToolCall, ...]  # calls of the client's own function tools: the client runs them


@dataclass(frozen=True)
class Finished:
    finish_reason: str
    usage: Totals


LoopEvent = Content | CallEvent | ClientCalls | Finished


@dataclass
class Totals:
    prompt_tokens: int = 0  # every round's prompt (each round is one engine request)
    cached_tokens: int = 0
    completion_tokens: int = 0

    def add(self, out: Any) -> None:
        self.prompt_tokens += out.num_prompt_tokens
        self.cached_tokens += out.num_cached_tokens
        self.completion_tokens += out.num_output_tokens


@dataclass(frozen=True)
class LoopPlan:
    """What the loop runs with: the client's function tools plus the hosted ones, as one tool list."""

    hub: McpHub
    tools: tuple[Tool, ...]
    hosted: dict[str, HostedTool]
    max_rounds: int


@dataclass
class _Round:
    content: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    final: Any = None
    outputs: list[Any] = field(default_factory=list)  # the engine's deltas, for the renderer's turn memory


def round_tool_choice(body: ChatCompletionRequest, round_index: int, max_rounds: int) -> Any:
    if round_index >= max_rounds:
        return "none"
    return body.tool_choice if round_index == 0 else "auto"


def render_prompt(state: AppState, body: ChatCompletionRequest) -> list[int]:
    assert state.renderer is not None
    try:
        text = state.renderer.render(body.messages, body.tools, body.chat_template_kwargs)
    except Exception as exc:  # jinja raises for conversations the template refuses
        raise errors.bad_request(f"The chat template could not render these messages: {exc}",
                                 param="messages") from exc
    return list(state.renderer.prompt_ids(text, body.messages))


async def _generate(state: AppState, request: Request, body: ChatCompletionRequest, request_id: str,
                    round_: _Round) -> AsyncGenerator[Content, None]:
    """One model turn: content deltas as they come; the turn's calls and final output into round_."""
    assert state.renderer is not None
    tool_format = state.renderer.tool_format
    grammar = chat_grammar(body, tool_format.name)
    parse = uses_tool_grammar(body)
    primed = await submit(request, state, render_prompt(state, body), [chat_params(body, grammar, 0)], request_id)
    parser = tool_format.parser()
    complete: list[tuple[str, str]] = []
    async with aclosing(merge(primed)) as stream:
        async for _, out in stream:
            round_.outputs.append(out)
            events: list[Any] = parser.feed(out.new_text) if parse else [ContentDelta(out.new_text)]
            if out.finished:
                complete = list(parser.calls)  # the calls closed by </tool_call> before the end
                events += parser.finish() if parse else []
                round_.final = out
            for ev in events:
                if isinstance(ev, ContentDelta) and ev.text:
                    round_.content.append(ev.text)
                    yield Content(ev.text)
    raise_for_output(round_.final)
    round_.calls = complete if round_.final.finish_reason == "length" else list(parser.calls)


async def _run_hosted(plan: LoopPlan, calls: Sequence[McpCall]) -> AsyncGenerator[McpCall, None]:
    """Run the calls concurrently; yield each finished call as it finishes. Closing the iterator
    cancels the calls still running."""

    async def one(call: McpCall) -> McpCall:
        return call.finished(await plan.hub.call(plan.hosted[call.tool], call.arguments))

    tasks = [asyncio.ensure_future(one(c)) for c in calls]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_loop(state: AppState, request: Request, body: ChatCompletionRequest, plan: LoopPlan,
                   base_id: str) -> AsyncGenerator[LoopEvent, None]:
    messages: list[ChatMessage] = list(body.messages)
    totals = Totals()
    for index in range(plan.max_rounds + 1):
        turn = body.model_copy(update={"messages": messages, "tools": list(plan.tools), "mcp_tools": None,
                                       "tool_choice": round_tool_choice(body, index, plan.max_rounds)})
        round_ = _Round()
        async with aclosing(_generate(state, request, turn, f"{base_id}-r{index}", round_)) as deltas:
            async for delta in deltas:
                yield delta
        totals.add(round_.final)
        if not round_.calls:
            yield Finished(round_.final.finish_reason, totals)
            return
        ids = [new_call_id() for _ in round_.calls]
        tool_calls = [ToolCall(id=i, function=FunctionCall(name=n, arguments=a))
                      for i, (n, a) in zip(ids, round_.calls, strict=True)]
        assert state.renderer is not None  # the next round's prompt (or the client's) reuses this answer's ids
        state.renderer.turns.remember_outputs(round_.outputs, ids, "".join(round_.content) or None)
        hosted = [McpCall(id=c.id, round=index, server_label=plan.hosted[c.function.name].server,
                          name=plan.hosted[c.function.name].tool, tool=c.function.name,
                          arguments=c.function.arguments)
                  for c in tool_calls if c.function.name in plan.hosted]
        for call in hosted:
            yield CallEvent(call)
        results: dict[str, McpCall] = {}
        async with aclosing(_run_hosted(plan, hosted)) as finished:
            async for done in finished:
                results[done.id] = done
                yield CallEvent(done)
        client = tuple(c for c in tool_calls if c.function.name not in plan.hosted)
        if client:
            yield ClientCalls(client)
            yield Finished("tool_calls", totals)
            return
        messages.append(AssistantMessage(role="assistant", content="".join(round_.content) or None,
                                         tool_calls=tool_calls))
        messages.extend(ToolMessage(role="tool", tool_call_id=c.id, content=results[c.id].output or "")
                        for c in tool_calls)
    raise AssertionError("the last round runs without tools")  # pragma: no cover
