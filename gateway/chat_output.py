"""Engine outputs -> OpenAI chat responses: the full ChatCompletion and the stream's chunks.

Pure given its inputs (the tool-call ids are random, as OpenAI's are). Tool calls are read with the
same incremental parser on both paths, so a streamed answer and a whole one always agree.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sluicegate.gateway.logprobs import TokenText, chat_logprobs
from sluicegate.gateway.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    DeltaFunction,
    DeltaToolCall,
    FunctionCall,
    PromptTokensDetails,
    ResponseMessage,
    ToolCall,
    Usage,
)
from sluicegate.grammars.tool_formats import (
    DEFAULT_FORMAT,
    ContentDelta,
    ToolCallArgs,
    ToolCallParser,
    ToolCallStart,
    get_format,
    parse_tool_calls,
)

_ALPHABET = string.ascii_letters + string.digits


def new_call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class ChatContext:
    """What every chunk/response of one request shares."""

    id: str
    created: int
    model: str
    parse_tools: bool  # the tool grammar was on: read tool calls out of the text
    include_usage: bool
    logprobs: bool
    token_text: TokenText | None = None
    cache_key: str | None = None  # the request's prompt_cache_key (per-key cache metrics)
    tool_format: str = DEFAULT_FORMAT  # the model's tool-call format (grammars/tool_formats/)


def openai_finish_reason(engine_reason: str | None, has_calls: bool) -> str | None:
    if engine_reason == "stop" and has_calls:
        return "tool_calls"
    if engine_reason in ("abort", "error"):
        return engine_reason
    return engine_reason


def usage_of(finals: Sequence[Any]) -> Usage:
    """Prompt counted once (n choices share it), outputs summed; cached tokens of the first choice."""
    prompt = max((o.num_prompt_tokens for o in finals), default=0)
    completion = sum(o.num_output_tokens for o in finals)
    cached = finals[0].num_cached_tokens if finals else 0
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=cached))


def _logprobs(ctx: ChatContext, outs: Sequence[Any]) -> ChoiceLogprobs | None:
    if not ctx.logprobs or ctx.token_text is None:
        return None
    entries = [e for o in outs for e in o.logprobs]
    return ChoiceLogprobs(content=chat_logprobs(entries, ctx.token_text))


def build_completion(ctx: ChatContext, outs: Sequence[Sequence[Any]]) -> ChatCompletion:
    """n choices' complete output lists -> one ChatCompletion."""
    choices = []
    for index, choice_outs in enumerate(outs):
        text = "".join(o.new_text for o in choice_outs)
        final = choice_outs[-1]
        message = ResponseMessage(content=text)
        if ctx.parse_tools:
            content, parsed = parse_tool_calls(text, ctx.tool_format)
            calls = [ToolCall(id=new_call_id(), function=FunctionCall(name=n, arguments=a)) for n, a in parsed]
            message = ResponseMessage(content=content or (None if calls else ""), tool_calls=calls or None)
        reason = openai_finish_reason(final.finish_reason, bool(message.tool_calls))
        choices.append(ChatChoice(index=index, message=message, logprobs=_logprobs(ctx, choice_outs),
                                  finish_reason=reason))
    return ChatCompletion(id=ctx.id, created=ctx.created, model=ctx.model, choices=choices,
                          usage=usage_of([o[-1] for o in outs]))


@dataclass
class ChoiceStreamer:
    """One choice's outputs -> its chunk choices: the role first, then content / tool-call deltas."""

    ctx: ChatContext
    index: int
    started: bool = False
    call_ids: list[str] = field(default_factory=list)
    parser: ToolCallParser = field(init=False)

    def __post_init__(self) -> None:
        self.parser = get_format(self.ctx.tool_format).parser()

    def deltas(self, out: Any) -> list[ChunkChoice]:
        result: list[ChunkChoice] = []
        if not self.started:
            self.started = True
            result.append(ChunkChoice(index=self.index, delta=Delta(role="assistant", content="")))
        deltas = self._text_deltas(out.new_text)
        if out.finished:
            deltas += self._events_to_deltas(self.parser.finish()) if self.ctx.parse_tools else []
        logprobs = _logprobs(self.ctx, [out])
        if logprobs is not None and logprobs.content and not deltas:
            deltas = [Delta(content="")]
        for i, delta in enumerate(deltas):
            result.append(ChunkChoice(index=self.index, delta=delta, logprobs=logprobs if i == 0 else None))
        if out.finished:
            reason = openai_finish_reason(out.finish_reason, bool(self.call_ids))
            result.append(ChunkChoice(index=self.index, delta=Delta(), finish_reason=reason))
        return result

    def _text_deltas(self, text: str) -> list[Delta]:
        if not text:
            return []
        if not self.ctx.parse_tools:
            return [Delta(content=text)]
        return self._events_to_deltas(self.parser.feed(text))

    def _events_to_deltas(self, events: Sequence[Any]) -> list[Delta]:
        deltas: list[Delta] = []
        for ev in events:
            if isinstance(ev, ContentDelta) and ev.text:
                deltas.append(Delta(content=ev.text))
            elif isinstance(ev, ToolCallStart):
                self.call_ids.append(new_call_id())
                call = DeltaToolCall(index=ev.index, id=self.call_ids[ev.index], type="function",
                                     function=DeltaFunction(name=ev.name, arguments=""))
                deltas.append(Delta(tool_calls=[call]))
            elif isinstance(ev, ToolCallArgs) and ev.fragment:
                deltas.append(Delta(tool_calls=[DeltaToolCall(index=ev.index,
                                                              function=DeltaFunction(arguments=ev.fragment))]))
        return deltas


def completion_payload(completion: ChatCompletion) -> dict[str, Any]:
    """The JSON OpenAI sends: `tool_calls` only on messages that have calls."""
    data: dict[str, Any] = completion.model_dump(mode="json")
    for choice in data["choices"]:
        if choice["message"].get("tool_calls") is None:
            choice["message"].pop("tool_calls", None)
    return data


def chunk(ctx: ChatContext, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(id=ctx.id, created=ctx.created, model=ctx.model, choices=choices, usage=usage)
