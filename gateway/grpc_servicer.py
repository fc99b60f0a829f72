"""The Inference service (proto/sluicegate/v1/inference.proto) over the shared AsyncEngine.

Each streaming call owns one engine request, opened inside `async with aclosing(...)`: however the
call ends (finished, Abort, client cancel, deadline), closing the engine's generator aborts the
request and frees its KV blocks. Refusals (bad arguments, queue full, unknown model) become gRPC
status codes via the gateway's own error mapping (gateway/errors.py), so HTTP and gRPC agree.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import grpc

from sluicegate.gateway import errors, grpc_convert
from sluicegate.gateway.chat_output import ChatContext, ChoiceStreamer
from sluicegate.gateway.protocol import ChunkChoice
from sluicegate.proto.sluicegate.v1 import inference_pb2 as pb
from sluicegate.proto.sluicegate.v1 import inference_pb2_grpc as pb_grpc

_CODE_BY_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


async def abort_with(context: grpc.aio.ServicerContext, exc: BaseException, retry_after_s: int) -> None:
    """End the call with the status code the error maps to (raises); re-raise what maps to nothing."""
    mapped = errors.from_engine_error(exc, retry_after_s)
    if mapped is None:
        raise exc
    code = _CODE_BY_STATUS.get(mapped.status, grpc.StatusCode.INTERNAL)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        context.set_trailing_metadata((("retry-after", str(retry_after_s)),))
    await context.abort(code, mapped.message)


class InferenceServicer(pb_grpc.InferenceServicer):
    """Generate / Chat / ListModels / Abort over one engine and the chat renderer HTTP uses."""

    def __init__(self, engine: Any, renderer: Any, model_name: str, retry_after_s: int = 1) -> None:
        self.engine = engine
        self.renderer = renderer  # gateway.chat_format.ChatRenderer
        self.model_name = model_name
        self.retry_after_s = retry_after_s
        self.created = int(time.time())
        self.running: set[str] = set()  # request ids of calls in flight (for Abort)
        self.accepting = True  # off while the server drains

    # ---- request ids ----------------------------------------------------------------------------
    def _claim(self, requested: str) -> str:
        if not self.accepting:
            raise errors.not_ready(draining=True)
        rid = requested or uuid.uuid4().hex
        if rid in self.running:
            raise errors.APIError(409, f"a call with request_id {rid!r} is already running", param="request_id")
        self.running.add(rid)
        return rid

    @staticmethod
    def engine_id(rid: str) -> str:
        return f"grpc-{rid}"  # its own namespace: Abort can never reach an HTTP request

    async def _outputs(self, prompt_ids: list[int], params: Any, rid: str,
                       context: grpc.aio.ServicerContext) -> AsyncGenerator[Any, None]:
        """The engine's outputs for one call; refusals and failures end the call with a status code."""
        gen = self.engine.generate(prompt_ids, params, request_id=self.engine_id(rid))
        async with aclosing(gen):
            while True:
                try:
                    out = await gen.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:  # refusals arrive at the first output
                    await abort_with(context, exc, self.retry_after_s)
                    return
                if out.finished and out.finish_reason == "error":
                    await context.abort(grpc.StatusCode.INTERNAL, out.error or "generation failed")
                yield out
                if out.finished:
                    return

    # ---- rpcs -----------------------------------------------------------------------------------
    async def Generate(self, request: pb.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[pb.GenerateResponse]:
        try:
            body = grpc_convert.generate_request(request, self.model_name)
            params = grpc_convert.generate_params(request, body)
            rid = self._claim(request.request_id)
        except errors.APIError as exc:
            await abort_with(context, exc, self.retry_after_s)
            return
        try:
            ids = self._generate_ids(body.prompt)
            async with aclosing(self._outputs(ids, params, rid, context)) as outs:
                async for out in outs:
                    msg = pb.GenerateResponse(request_id=rid, text=out.new_text, token_ids=out.new_token_ids)
                    if out.finished:
                        msg.finish_reason = grpc_convert.finish_reason(out.finish_reason)
                        msg.usage.CopyFrom(grpc_convert.usage(out))
                    yield msg
        finally:
            self.running.discard(rid)

    async def Chat(self, request: pb.ChatRequest,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[pb.ChatResponse]:
        try:
            body = grpc_convert.chat_request(request, self.model_name)
            params = grpc_convert.chat_sampling(body, grpc_convert.chat_spec(request, body, self.renderer.tool_format.name))
            ids = self._prompt_ids(body)
            rid = self._claim(request.request_id)
        except Exception as exc:  # APIError, or GrammarError from the tool grammar's spec
            await abort_with(context, exc, self.retry_after_s)
            return
        ctx = ChatContext(id=rid, created=int(time.time()), model=self.model_name,
                          parse_tools=grpc_convert.uses_tool_grammar(body), include_usage=False, logprobs=False,
                          tool_format=self.renderer.tool_format.name)
        message = _MessageBuilder()
        streamer = ChoiceStreamer(ctx, 0)
        answer: list[Any] = []  # the engine's deltas, for the renderer's turn memory
        try:
            async with aclosing(self._outputs(ids, params, rid, context)) as outs:
                async for out in outs:
                    answer.append(out)
                    delta, reason = message.add(streamer.deltas(out))
                    if delta.text or delta.tool_calls:
                        yield pb.ChatResponse(request_id=rid, delta=delta)
                    if out.finished:
                        done = pb.ChatDone(message=message.message(), usage=grpc_convert.usage(out),
                                           finish_reason=grpc_convert.finish_reason(reason))
                        self.renderer.turns.remember_outputs(answer, streamer.call_ids, done.message.content or None)
                        yield pb.ChatResponse(request_id=rid, done=done)
        finally:
            self.running.discard(rid)

    def _generate_ids(self, prompt: Any) -> list[int]:
        """Text is tokenized as /v1/completions does (with the tokenizer's special tokens)."""
        if isinstance(prompt, str):
            return list(self.engine.tokenizer(prompt)["input_ids"])
        return [int(i) for i in prompt]

    def _prompt_ids(self, body: Any) -> list[int]:
        try:
            text = self.renderer.render(body.messages, body.tools)
        except Exception as exc:  # jinja refuses some conversations (e.g. role order)
            raise errors.bad_request(f"The chat template could not render these messages: {exc}",
                                     param="messages") from exc
        ids: list[int] = self.renderer.prompt_ids(text, body.messages)
        return ids

    async def ListModels(self, request: pb.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListModelsResponse:
        info = pb.ModelInfo(id=self.model_name, max_model_len=int(self.engine.max_model_len), owned_by="sluicegate")
        return pb.ListModelsResponse(models=[info])

    async def Abort(self, request: pb.AbortRequest, context: grpc.aio.ServicerContext) -> pb.AbortResponse:
        if request.request_id not in self.running:
            return pb.AbortResponse(found=False)
        await self.engine.abort(self.engine_id(request.request_id))
        return pb.AbortResponse(found=True)


class _MessageBuilder:
    """Chunk choices (from the HTTP streamer) -> gRPC deltas, accumulating the whole message."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.calls: list[pb.ToolCall] = []

    def add(self, choices: list[ChunkChoice]) -> tuple[pb.ChatDelta, str | None]:
        delta, reason = pb.ChatDelta(), None
        for choice in choices:
            reason = choice.finish_reason or reason
            if choice.delta.content:
                delta.text += choice.delta.content
                self.content.append(choice.delta.content)
            for call in choice.delta.tool_calls or []:
                fn = call.function
                name, args = (fn.name or "", fn.arguments or "") if fn is not None else ("", "")
                if call.index >= len(self.calls):
                    self.calls.append(pb.ToolCall(id=call.id or "", name=name))
                self.calls[call.index].arguments += args
                delta.tool_calls.append(pb.ToolCallDelta(index=call.index, id=call.id or "", name=name,
                                                         arguments=args))
        return delta, reason

    def message(self) -> pb.ChatMessage:
        content = "".join(self.content)
        if self.calls:
            content = content.rstrip()  # the separator before the first call, as the HTTP path strips it
        return pb.ChatMessage(role="assistant", content=content, tool_calls=self.calls)
