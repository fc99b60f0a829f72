"""OpenAI request fields -> the engine's SamplingParams and grammar spec (pure functions)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sluicegate.gateway import errors
from sluicegate.gateway.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    NamedToolChoice,
    SamplingFields,
)
from sluicegate.grammars.specs import (
    Choice,
    GrammarSpec,
    JsonObject,
    JsonSchema,
    Lark,
    Regex,
    ToolCalls,
    ToolSpec,
)
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


def _json_spec(schema: dict[str, Any] | str, param: str) -> JsonSchema:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise errors.bad_request(f"{param} is not valid JSON: {exc}", param=param) from exc
    if not isinstance(schema, dict | bool):
        raise errors.bad_request(f"{param} must be a JSON schema object", param=param)
    return JsonSchema.of(schema)


def structured_grammar(req: SamplingFields) -> GrammarSpec | None:
    """vLLM's guided_json / guided_regex / guided_choice / guided_grammar / structured_outputs as
    one grammar spec; more than one constraint is a 400."""
    found: list[tuple[str, GrammarSpec]] = []
    if req.guided_json is not None:
        found.append(("guided_json", _json_spec(req.guided_json, "guided_json")))
    if req.guided_regex is not None:
        found.append(("guided_regex", Regex(req.guided_regex)))
    if req.guided_choice is not None:
        found.append(("guided_choice", Choice(tuple(req.guided_choice))))
    if req.guided_grammar is not None:
        found.append(("guided_grammar", Lark(req.guided_grammar)))
    so = req.structured_outputs
    if so is not None:
        if so.json_ is not None:
            found.append(("structured_outputs.json", _json_spec(so.json_, "structured_outputs.json")))
        if so.regex is not None:
            found.append(("structured_outputs.regex", Regex(so.regex)))
        if so.choice is not None:
            found.append(("structured_outputs.choice", Choice(tuple(so.choice))))
        if so.grammar is not None:
            found.append(("structured_outputs.grammar", Lark(so.grammar)))
        if so.json_object:
            found.append(("structured_outputs.json_object", JsonObject()))
    if len(found) > 1:
        names = ", ".join(name for name, _ in found)
        raise errors.bad_request(f"Only one output constraint may be given; got {names}.", param=found[1][0])
    return found[0][1] if found else None


def chat_grammar(req: ChatCompletionRequest, tool_format: str = DEFAULT_FORMAT) -> GrammarSpec | None:
    """Tools (unless tool_choice is "none") in the model's tool-call format, response_format, or one
    of vLLM's structured-output fields, as one grammar spec."""
    fmt = req.response_format
    wants_json = fmt is not None and fmt.type != "text"
    structured = structured_grammar(req)
    if structured is not None:
        if wants_json or uses_tool_grammar(req):
            raise errors.bad_request("guided_* / structured_outputs cannot be combined with response_format or "
                                     "tools; give one constraint.", param="response_format" if wants_json else "tools")
        return structured
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
    # A tool-call format's markers may be special tokens ([TOOL_CALLS], <|python_tag|>) that its
    # parser must see in the text. The tool grammar admits no other special token (prose is text
    # and EOS never reaches the text), so keeping them in lets nothing else through.
    keep_specials = isinstance(grammar, ToolCalls)
    return SamplingParams(max_tokens=req.output_limit(), logprobs=logprobs, grammar=grammar,
                          skip_special_tokens=not keep_specials,
                          **_common(req, choice_index))  # type: ignore[arg-type]


def completion_params(req: CompletionRequest, choice_index: int, grammar: GrammarSpec | None = None) -> SamplingParams:
    from sluicegate.engine.params import SamplingParams

    return SamplingParams(max_tokens=req.max_tokens, logprobs=req.logprobs, grammar=grammar,
                          **_common(req, choice_index))  # type: ignore[arg-type]
