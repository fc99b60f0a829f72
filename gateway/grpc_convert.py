"""gRPC messages -> the HTTP gateway's request models, grammar specs and SamplingParams (pure).

A Chat call is turned into the same `ChatCompletionRequest` the HTTP route validates, so both APIs
accept and refuse the same things with the same messages, build the same tool grammar
(gateway/sampling.py) and render the same prompt text (so a conversation that moves between HTTP
and gRPC keeps hitting the prefix cache). Every refusal is raised as the gateway's APIError; the
servicer maps its HTTP status to a gRPC status code.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sluicegate.gateway import errors
from sluicegate.gateway.protocol import ChatCompletionRequest, CompletionRequest
from sluicegate.gateway.sampling import (
    chat_grammar,
    chat_params,
    completion_params,
    tool_choice_value,
    uses_tool_grammar,
)
from sluicegate.grammars.specs import Choice, GrammarSpec, JsonObject, JsonSchema, Regex
from sluicegate.proto.sluicegate.v1 import inference_pb2 as pb

if TYPE_CHECKING:
    from sluicegate.engine.params import SamplingParams

FINISH_REASONS = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "tool_calls": pb.FINISH_REASON_TOOL_CALLS,
    "abort": pb.FINISH_REASON_ABORT,
}


def finish_reason(reason: str | None) -> pb.FinishReason:
    return FINISH_REASONS.get(reason or "", pb.FINISH_REASON_UNSPECIFIED)


def validated(model: type[Any], body: dict[str, Any]) -> Any:
    """pydantic validation with the HTTP API's error message (field named, 400 -> INVALID_ARGUMENT)."""
    from fastapi.exceptions import RequestValidationError

    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise errors.validation_error(RequestValidationError(exc.errors())) from None


def sampling_fields(s: pb.SamplingParams) -> dict[str, Any]:
    """The set sampling fields, named as the OpenAI request models name them."""
    out: dict[str, Any] = {}
    for name in ("max_tokens", "temperature", "top_p", "repetition_penalty", "seed", "prompt_cache_key",
                 "prompt_cache_retention"):
        if s.HasField(name):
            out[name] = getattr(s, name)
    for name in ("top_k", "min_p", "presence_penalty", "frequency_penalty", "min_tokens", "ignore_eos"):
        value = getattr(s, name)
        if value:
            out[name] = value
    if s.stop:
        out["stop"] = list(s.stop)
    if s.stop_token_ids:
        out["stop_token_ids"] = list(s.stop_token_ids)
    if s.logit_bias:
        out["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()}
    return out


def _json(text: str, param: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise errors.bad_request(f"{param} is not valid JSON: {exc}", param=param) from None


def constraint_spec(c: pb.Constraint, param: str) -> GrammarSpec | None:
    """A Constraint -> the grammar spec it asks for (None: free text)."""
    kind = c.WhichOneof("kind")
    if kind == "json_schema":
        schema = _json(c.json_schema, f"{param}.json_schema")
        if not isinstance(schema, (dict, bool)):
            raise errors.bad_request("json_schema must be a JSON object (or a boolean)", param=param)
        return JsonSchema.of(schema)
    if kind == "regex":
        if not c.regex:
            raise errors.bad_request("regex must not be empty", param=f"{param}.regex")
        return Regex(c.regex)
    if kind == "choice":
        if not c.choice.options:
            raise errors.bad_request("choice needs at least one option", param=f"{param}.choice")
        return Choice(tuple(c.choice.options))
    if kind == "json_object":
        return JsonObject() if c.json_object else None
    return None


def check_model(requested: str, served: str) -> None:
    if requested and requested != served:
        raise errors.model_not_found(requested)


# --- Generate ----------------------------------------------------------------------------------

def generate_request(req: pb.GenerateRequest, model: str) -> CompletionRequest:
    check_model(req.model, model)
    kind = req.WhichOneof("prompt")
    if kind is None:
        raise errors.bad_request("a prompt is required: set text or token_ids", param="prompt")
    prompt: str | list[int] = req.text if kind == "text" else list(req.token_ids.ids)
    if kind == "token_ids" and not prompt:
        raise errors.bad_request("token_ids must not be empty", param="prompt")
    body: CompletionRequest = validated(CompletionRequest, {"model": model, "prompt": prompt,
                                                            **sampling_fields(req.sampling)})
    return body


def generate_params(req: pb.GenerateRequest, body: CompletionRequest) -> SamplingParams:
    params = completion_params(body, 0)
    params.grammar = constraint_spec(req.constraint, "constraint") if req.HasField("constraint") else None
    return params


# --- Chat --------------------------------------------------------------------------------------

def _message(i: int, m: pb.ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name:
        out["name"] = m.name
    if m.role == "assistant" and m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [{"id": c.id or f"call_{i}_{j}", "type": "function",
                              "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                             for j, c in enumerate(m.tool_calls)]
    if m.role == "tool":
        out["tool_call_id"] = m.tool_call_id
    return out


def _tool(i: int, t: pb.Tool) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": t.name}
    if t.description:
        fn["description"] = t.description
    if t.parameters:
        params = _json(t.parameters, f"tools[{i}].parameters")
        if not isinstance(params, dict):
            raise errors.bad_request("parameters must be a JSON schema object", param=f"tools[{i}].parameters")
        fn["parameters"] = params
    return {"type": "function", "function": fn}


def _tool_choice(c: pb.ToolChoice) -> Any:
    kind = c.WhichOneof("choice")
    if kind == "function":
        return {"type": "function", "function": {"name": c.function}}
    modes = {pb.ToolChoice.MODE_AUTO: "auto", pb.ToolChoice.MODE_NONE: "none",
             pb.ToolChoice.MODE_REQUIRED: "required"}
    return modes.get(c.mode) if kind == "mode" else None


def chat_request(req: pb.ChatRequest, model: str) -> ChatCompletionRequest:
    """A Chat call as the HTTP API's validated request (without response_format: see chat_spec)."""
    check_model(req.model, model)
    body: dict[str, Any] = {"model": model, "messages": [_message(i, m) for i, m in enumerate(req.messages)],
                            **sampling_fields(req.sampling)}
    if req.tools:
        body["tools"] = [_tool(i, t) for i, t in enumerate(req.tools)]
    choice = _tool_choice(req.tool_choice)
    if choice is not None:
        body["tool_choice"] = choice
    if req.HasField("parallel_tool_calls"):
        body["parallel_tool_calls"] = req.parallel_tool_calls
    result: ChatCompletionRequest = validated(ChatCompletionRequest, body)
    return result


def chat_spec(req: pb.ChatRequest, body: ChatCompletionRequest, tool_format: str) -> GrammarSpec | None:
    """The tool grammar when tools are on (as HTTP builds it), else the response_format constraint."""
    fmt = constraint_spec(req.response_format, "response_format") if req.HasField("response_format") else None
    if uses_tool_grammar(body):
        if fmt is not None and tool_choice_value(body) == "auto":
            raise errors.bad_request("response_format cannot be combined with tools when tool_choice is "
                                     "auto; use tool_choice none or drop response_format.",
                                     param="response_format")
        return chat_grammar(body, tool_format)
    return fmt


def chat_sampling(body: ChatCompletionRequest, spec: GrammarSpec | None) -> SamplingParams:
    return chat_params(body, spec, 0)


def usage(final: Any) -> pb.Usage:
    prompt, completion = final.num_prompt_tokens, final.num_output_tokens
    return pb.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                    cached_tokens=final.num_cached_tokens)
