"""OpenAI request fields -> the engine's SamplingParams and grammar spec (pure functions)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluicegate.gateway import errors
from sluicegate.gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    NamedToolChoice,
    SamplingFields,
)
from sluicegate.grammars.specs import GrammarSpec, JsonObject, JsonSchema, ToolSpec
from sluicegate.grammars.tool_formats import DEFAULT_FORMAT
from sluicegate.grammars.tool_grammar import tool_calls_spec

if TYPE_CHECKING:
    from sluicegate.engine.params import SamplingParams


def tool_choice_value(req: ChatCompletionRequest) -> str:
    """"none" | "auto" | "required" | a tool's name (OpenAI's default is "auto" when tools are given)."""
    choice = req.tool_choice
    if isinstance(choice, NamedToolChoice):
        return choice.function.name
    return choice or ("auto" if req.tools else "none")


def uses_tool_grammar(req: ChatCompletionRequest) -> bool:
    return bool(req.tools) and tool_choice_value(req) != "none"


def chat_grammar(req: ChatCompletionRequest, tool_format: str = DEFAULT_FORMAT) -> GrammarSpec | None:
    """Tools (unless tool_choice is "none") in the model's tool-call format, or response_format, as one grammar spec."""
    fmt = req.response_format
    wants_json = fmt is not None and fmt.type != "text"
    if uses_tool_grammar(req):
        assert req.tools is not None
        choice = tool_choice_value(req)
        if wants_json and choice == "auto":
            raise errors.bad_request("response_format cannot be combined with tools when tool_choice is "
                                     "'auto'; use tool_choice 'none' or drop response_format.",
                                     param="response_format")
        tools = [ToolSpec.of(t.function.name, t.function.parameters, t.function.description or "")
                 for t in req.tools]
        parallel = True if req.parallel_tool_calls is None else req.parallel_tool_calls
        # raises GrammarError (-> 400) for a tool_choice naming no tool or a bad parameters schema
        return tool_calls_spec(tools, choice, parallel, tool_format)
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return JsonObject()
    assert fmt.json_schema is not None
    schema = fmt.json_schema.schema_
    return JsonSchema.of(schema) if schema is not None else JsonObject()


def _common(req: SamplingFields, choice_index: int) -> dict[str, object]:
    seed = None if req.seed is None else (req.seed + choice_index) % 2**63  # n choices must differ
    return {
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "top_k": req.top_k or 0,
        "min_p": req.min_p or 0.0,
        "repetition_penalty": req.repetition_penalty or 1.0,
        "presence_penalty": req.presence_penalty or 0.0,
        "frequency_penalty": req.frequency_penalty or 0.0,
        "logit_bias": {int(k): float(v) for k, v in (req.logit_bias or {}).items()},
        "seed": seed,
        "stop": req.stop_list(),
        "stop_token_ids": list(req.stop_token_ids or []),
        "ignore_eos": bool(req.ignore_eos),
        "min_tokens": req.min_tokens or 0,
        "prompt_cache_retention": req.prompt_cache_retention,
    }


def chat_params(req: ChatCompletionRequest, grammar: GrammarSpec | None, choice_index: int) -> SamplingParams:
    from sluicegate.engine.params import SamplingParams

    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    return SamplingParams(max_tokens=req.output_limit(), logprobs=logprobs, grammar=grammar,
                          **_common(req, choice_index))  # type: ignore[arg-type]


def completion_params(req: CompletionRequest, choice_index: int) -> SamplingParams:
    from sluicegate.engine.params import SamplingParams

    return SamplingParams(max_tokens=req.max_tokens, logprobs=req.logprobs,
                          **_common(req, choice_index))  # type: ignore[arg-type]
