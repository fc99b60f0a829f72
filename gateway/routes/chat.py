"""POST /v1/chat/completions: render -> grammar -> n engine requests -> JSON or SSE."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sluicegate.gateway import errors
from sluicegate.gateway.chat_output import (
    ChatContext,
    ChoiceStreamer,
    build_completion,
    chunk,
    completion_payload,
    usage_of,
)
from sluicegate.gateway.generation import (
    ClientDisconnected,
    Primed,
    collect,
    merge,
    raise_for_output,
    unless_disconnected,
)
from sluicegate.gateway.protocol import ChatCompletionRequest
from sluicegate.gateway.routes.submit import submit
from sluicegate.gateway.sampling import chat_grammar, chat_params, uses_tool_grammar
from sluicegate.gateway.state import AppState, Serving, check_api_key, check_model
from sluicegate.gateway.streaming import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, chat_chunk_payload, sse_event

router = APIRouter(dependencies=[Depends(check_api_key)])
# apply_chat_template's own arguments: the request sets these through its other fields
RESERVED_TEMPLATE_ARGS = frozenset({"messages", "conversation", "tools", "chat_template", "tokenize",
                                    "add_generation_prompt", "documents", "continue_final_message"})


def _prompt_ids(state: AppState, body: ChatCompletionRequest) -> list[int]:
    assert state.renderer is not None
    reserved = RESERVED_TEMPLATE_ARGS & set(body.chat_template_kwargs or {})
    if reserved:
        raise errors.bad_request(f"chat_template_kwargs may not set {', '.join(sorted(reserved))}",
                                 param="chat_template_kwargs")
    try:
        text = state.renderer.render(body.messages, body.tools, body.chat_template_kwargs)
    except Exception as exc:  # jinja raises for conversations the template refuses (e.g. role order)
        raise errors.bad_request(f"The chat template could not render these messages: {exc}",
                                 param="messages") from exc
    ids: list[int] = state.renderer.prompt_ids(text, body.messages)
    return ids


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request,
                           state: Serving) -> Response:
    check_model(state, body.model)
    if body.mcp_tools:  # hosted MCP tools: the gateway runs the tool loop
        from sluicegate.gateway.mcp.chat import mcp_chat

        return await mcp_chat(body, request, state)
    n = body.n or 1
    if n > state.settings.max_n:
        raise errors.bad_request(f"n must be at most {state.settings.max_n}, got {n}", param="n")
    assert state.renderer is not None
    tool_format = state.renderer.tool_format
    grammar = chat_grammar(body, tool_format.name)
    prompt_ids = _prompt_ids(state, body)
    params = [chat_params(body, grammar, i) for i in range(n)]
    ctx = ChatContext(
        id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=state.model_name,
        parse_tools=uses_tool_grammar(body), tool_format=tool_format.name,
        include_usage=bool(body.stream and body.stream_options and body.stream_options.include_usage),
        logprobs=bool(body.logprobs), token_text=state.token_text, cache_key=body.prompt_cache_key)
    primed = await submit(request, state, prompt_ids, params, ctx.id)
    if body.stream:
        return StreamingResponse(_sse(state, ctx, primed), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    try:
        outs = await unless_disconnected(request, collect(primed))
    except ClientDisconnected:
        return Response(status_code=499)  # nobody reads it; the engine requests are already aborted
    for choice_outs in outs:
        raise_for_output(choice_outs[-1])
    completion = build_completion(ctx, outs)
    for choice, choice_outs in zip(completion.choices, outs):  # so the agent's next prompt reuses the answers
        calls = choice.message.tool_calls or []
        state.renderer.turns.remember_outputs(choice_outs, [c.id for c in calls], choice.message.content)
    state.metrics.observe_usage(completion.usage.prompt_tokens, completion.usage.prompt_tokens_details.cached_tokens,
                                completion.usage.completion_tokens, ctx.cache_key)
    return JSONResponse(completion_payload(completion))


async def _sse(state: AppState, ctx: ChatContext, primed: list[Primed]) -> AsyncIterator[str]:
    assert state.renderer is not None
    streamers = [ChoiceStreamer(ctx, i) for i in range(len(primed))]
    finals: list[object] = [None] * len(primed)
    answers: list[list[object]] = [[] for _ in primed]  # each choice's outputs
    contents: list[list[str]] = [[] for _ in primed]  # the content each choice's client received
    try:
        async with aclosing(merge(primed)) as stream:
            async for i, out in stream:
                if out.finished and out.finish_reason == "error":
                    yield sse_event(errors.server_error(out.error or "generation failed").body())
                    yield DONE
                    return
                for choice in streamers[i].deltas(out):
                    contents[i].append(choice.delta.content or "")
                    yield sse_event(chat_chunk_payload(chunk(ctx, [choice]), ctx.include_usage))
                answers[i].append(out)
                if out.finished:
                    finals[i] = out
                    state.renderer.turns.remember_outputs(answers[i], streamers[i].call_ids, "".join(contents[i]))
    except Exception as exc:  # the stream began with 200: report in-band, as OpenAI does
        mapped = errors.from_engine_error(exc) or errors.server_error(f"{type(exc).__name__}: {exc}")
        yield sse_event(mapped.body())
        yield DONE
        return
    usage = usage_of(finals)
    state.metrics.observe_usage(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens,
                                usage.completion_tokens, ctx.cache_key)
    if ctx.include_usage:
        yield sse_event(chat_chunk_payload(chunk(ctx, [], usage), True))
    yield DONE
