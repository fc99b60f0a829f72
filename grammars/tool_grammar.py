"""ToolCalls spec (tools + tool_choice + parallel) → one llguidance (lark) grammar in the spec's format.

    required      one call (several when parallel) and nothing else
    <tool name>   exactly one call of that tool
    auto          free prose; once the model starts a call (the format's trigger) the call is exact
    none          no grammar at all (`tool_calls_spec` returns None)

Each format (grammars/tool_formats/) writes its own call syntax; the arguments are held to the
tool's JSON schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.backend import GrammarError
from sluicegate.grammars.schema_check import validate_schema
from sluicegate.grammars.schema_close import close_objects
from sluicegate.grammars.specs import ToolCalls, ToolChoice, ToolSpec
from sluicegate.grammars.tool_formats import FORMATS, get_format

_MODES = ("none", "auto", "required")


def check_tool_calls(spec: ToolCalls) -> None:
    """Raise GrammarError for a tools/tool_choice combination that cannot be honoured."""
    if spec.format not in FORMATS:
        raise GrammarError(f"unknown tool-call format {spec.format!r} (supported: {', '.join(FORMATS)})", "tools")
    names = [tool.name for tool in spec.tools]
    if len(set(names)) != len(names):
        raise GrammarError(f"tool names must be unique, got {names}", "tools")
    if spec.tool_choice == "required" and not spec.tools:
        raise GrammarError("tool_choice 'required' needs at least one tool in 'tools'", "tool_choice")
    if spec.tool_choice not in _MODES and spec.tool_choice not in names:
        raise GrammarError(
            f"tool_choice names the tool {spec.tool_choice!r}, which is not in 'tools' {names}", "tool_choice"
        )
    for tool in spec.tools:
        if not tool.name:
            raise GrammarError("every tool needs a non-empty name", "tools")
        try:
            validate_schema(tool_arguments_schema(tool))
        except GrammarError as exc:  # name the tool and the field (else the gateway says response_format)
            raise GrammarError(f"tool {tool.name!r}: {exc.message}", exc.param or "tools") from None


def tool_calls_spec(
    tools: Sequence[ToolSpec], tool_choice: ToolChoice = "auto", parallel: bool = True, format: str = "hermes"
) -> ToolCalls | None:
    """The spec the gateway attaches to a request, or None when nothing is to be constrained."""
    spec = ToolCalls(tuple(tools), tool_choice, parallel, format)
    check_tool_calls(spec)
    if tool_choice == "none" or (tool_choice == "auto" and not tools):
        return None
    return spec


def tool_arguments_schema(tool: ToolSpec) -> Any:
    try:
        return json.loads(tool.parameters_json)
    except ValueError as exc:
        raise GrammarError(f"tool {tool.name!r}: parameters are not JSON: {exc}", "tools") from None


def tool_call_lark(spec: ToolCalls) -> str:
    """The lark grammar for `spec` (check_tool_calls must pass; tool_choice must not be 'none')."""
    check_tool_calls(spec)
    if spec.tool_choice == "none":
        raise GrammarError("tool_choice 'none' constrains nothing: attach no grammar", "tool_choice")
    named = spec.tool_choice not in _MODES
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    # arguments carry the declared parameters only, unless a schema says otherwise (schema_close.py)
    return get_format(spec.format).lark(spec, [close_objects(tool_arguments_schema(t)) for t in tools])
