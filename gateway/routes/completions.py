"""POST /v1/completions: the legacy text API (prompt string or list, token ids too), same sampling."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sluicegate.gateway import errors
from sluicegate.gateway.chat_format.template import check_unicode
from sluicegate.gateway.chat_output import usage_of
from sluicegate.gateway.generation import (
    ClientDisconnected,
    Primed,
    collect,
    merge,
    raise_for_output,
    unless_disconnected,
)
from sluicegate.gateway.logprobs import completion_logprobs
from sluicegate.gateway.protocol import Completion, CompletionChoice, CompletionRequest
from sluicegate.gateway.routes.submit import submit
from sluicegate.gateway.sampling import completion_params, structured_grammar
from sluicegate.gateway.state import AppState, Serving, check_api_key, check_model
from sluicegate.gateway.streaming import DONE, SSE_HEADERS, SSE_MEDIA_TYPE, sse_event

router = APIRouter(dependencies=[Depends(check_api_key)])


def prompts_of(state: AppState, body: CompletionRequest) -> list[tuple[str, list[int]]]:
    """Each prompt as (text, token ids): strings are tokenized, token-id lists are decoded for `echo`."""
    assert state.engine is not None
    tok = state.engine.tokenizer
    raw = body.prompt
    items: list[str | list[int]]
    if isinstance(raw, str):
        items = [raw]
    elif raw and all(isinstance(x, int) for x in raw):
        items = [list(raw)]  # type: ignore[arg-type]
    else:
        items = list(raw)  # type: ignore[arg-type]
    out: list[tuple[str, list[int]]] = []
    vocab = int(state.engine.vocab_size)
    for item in items:
        if isinstance(item, str):
            try:
                check_unicode(item)
            except ValueError as exc:
                raise errors.bad_request(f"Invalid prompt: {exc}", param="prompt") from None
            out.append((item, list(tok(item)["input_ids"])))
        else:
            bad = [t for t in item if not 0 <= t < vocab]
            if bad:  # checked before decode: a negative id makes the tokenizer raise OverflowError
                raise errors.bad_request(f"prompt token id {bad[0]} is outside the vocabulary [0, {vocab})",
                                         param="prompt")
            out.append((tok.decode(item), list(item)))
    return out


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request,
                      state: Serving) -> Response:
    check_model(state, body.model)
    n = body.n or 1
    if n > state.settings.max_n:
        raise errors.bad_request(f"n must be at most {state.settings.max_n}, got {n}", param="n")
    prompts = prompts_of(state, body)
    if n * len(prompts) > state.settings.max_n * 8:
        raise errors.bad_request("too many prompts x n in one request", param="prompt")
    grammar = structured_grammar(body)
    cid, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
    primed: list[Primed] = []
    try:
        for p_index, (_, ids) in enumerate(prompts):
            params = [completion_params(body, i, grammar) for i in range(n)]
            primed += await submit(request, state, ids, params, f"{cid}-{p_index}")
    except BaseException:
        for p in primed:
            await p.gen.aclose()
        raise
    echoes = [text for text, _ in prompts for _ in range(n)]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        stream = _sse(state, body, cid, created, primed, echoes, include_usage)
        return StreamingResponse(stream, media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)
    try:
        outs = await unless_disconnected(request, collect(primed))
    except ClientDisconnected:
        return Response(status_code=499)
    for choice_outs in outs:
        raise_for_output(choice_outs[-1])
    choices = [_choice(state, body, i, o, echoes[i]) for i, o in enumerate(outs)]
    usage = _usage(outs, n)
    state.metrics.observe_usage(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens,
                                usage.completion_tokens, body.prompt_cache_key)
    body_out = Completion(id=cid, created=created, model=state.model_name, choices=choices, usage=usage)
    return JSONResponse(body_out.model_dump(mode="json"))


def _usage(outs: Sequence[Sequence[Any]], n: int) -> Any:
    """Each prompt counted once (its n choices share it)."""
    finals = [o[-1] for o in outs]
    per_prompt = [usage_of(finals[i:i + n]) for i in range(0, len(finals), n)]
    total = per_prompt[0]
    for u in per_prompt[1:]:
        total.prompt_tokens += u.prompt_tokens
        total.completion_tokens += u.completion_tokens
        total.total_tokens += u.total_tokens
        total.prompt_tokens_details.cached_tokens += u.prompt_tokens_details.cached_tokens
    return total


def _choice(state: AppState, body: CompletionRequest, index: int, outs: Sequence[Any], echo: str) -> CompletionChoice:
    text = "".join(o.new_text for o in outs)
    prefix = echo if body.echo else ""
    logprobs = None
    if body.logprobs is not None and state.token_text is not None:
        logprobs = completion_logprobs([e for o in outs for e in o.logprobs], state.token_text, len(prefix))
    return CompletionChoice(index=index, text=prefix + text, logprobs=logprobs, finish_reason=outs[-1].finish_reason)


async def _sse(state: AppState, body: CompletionRequest, cid: str, created: int, primed: list[Primed],
               echoes: list[str], include_usage: bool) -> AsyncIterator[str]:
    finals: list[Any] = [None] * len(primed)
    offsets = [len(e) if body.echo else 0 for e in echoes]
    sent_echo = [False] * len(primed)
    try:
        async with aclosing(merge(primed)) as stream:
            async for i, out in stream:
                text = out.new_text
                if body.echo and not sent_echo[i]:
                    text, sent_echo[i] = echoes[i] + text, True
                logprobs = None
                if body.logprobs is not None and state.token_text is not None and out.logprobs:
                    logprobs = completion_logprobs(out.logprobs, state.token_text, offsets[i])
                offsets[i] += len(out.new_text)
                if out.finished:
                    finals[i] = out
                if not text and not out.finished and logprobs is None:
                    continue
                choice = CompletionChoice(index=i, text=text, logprobs=logprobs,
                                          finish_reason=out.finish_reason if out.finished else None)
                payload = Completion(id=cid, created=created, model=state.model_name, choices=[choice])
                data = payload.model_dump(mode="json")
                if not include_usage:
                    del data["usage"]
                yield sse_event(data)
    except Exception as exc:
        mapped = errors.from_engine_error(exc) or errors.server_error(f"{type(exc).__name__}: {exc}")
        yield sse_event(mapped.body())
        yield DONE
        return
    n = body.n or 1
    usage = _usage([[f] for f in finals], n)
    state.metrics.observe_usage(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens,
                                usage.completion_tokens, body.prompt_cache_key)
    if include_usage:
        yield sse_event(Completion(id=cid, created=created, model=state.model_name, choices=[],
                                   usage=usage).model_dump(mode="json"))
    yield DONE
