"""ToolCalls spec (tools + tool_choice + parallel) → one llguidance (lark) grammar, hermes format.

    required      one call (several, newline-separated, when parallel) and nothing else
    <tool name>   exactly one call of that tool
    auto          free prose; once the model writes `<tool_call>` the call must be exact, and the
                  prose can hold no `<tool_call>` that is not a real call
    none          no grammar at all (`tool_calls_spec` returns None)

Each call is `<tool_call>\\n{"name": "<tool>", "arguments": <args>}\\n</tool_call>` with the
arguments held to the tool's JSON schema, laid out as json.dumps writes it (", " and ": ").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.backend import GrammarError
from sluicegate.grammars.schema_check import validate_schema
from sluicegate.grammars.specs import ToolCalls, ToolChoice, ToolSpec
from sluicegate.grammars.tool_format import (
    CALL_PREFIX,
    CALL_SEPARATOR,
    CALL_SUFFIX,
    ITEM_SEPARATOR,
    KEY_SEPARATOR,
    TOOL_CALL_OPEN,
    call_head,
)

_MODES = ("none", "auto", "required")


def check_tool_calls(spec: ToolCalls) -> None:
    """Raise GrammarError for a tools/tool_choice combination that cannot be honoured."""
    if spec.format != "hermes":
        raise GrammarError(f"unknown tool-call format {spec.format!r} (supported: hermes)", "tools")
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
    tools: Sequence[ToolSpec], tool_choice: ToolChoice = "auto", parallel: bool = True
) -> ToolCalls | None:
    """The spec the gateway attaches to a request, or None when nothing is to be constrained."""
    spec = ToolCalls(tuple(tools), tool_choice, parallel)
    check_tool_calls(spec)
    if tool_choice == "none" or (tool_choice == "auto" and not tools):
        return None
    return spec


def tool_arguments_schema(tool: ToolSpec) -> Any:
    try:
        return json.loads(tool.parameters_json)
    except ValueError as exc:
        raise GrammarError(f"tool {tool.name!r}: parameters are not JSON: {exc}", "tools") from None


def _lark_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _arguments_rule(schema: Any) -> str:
    """%json with the layout hermes models write; x-guidance sits at the schema's top level."""
    layout = {"item_separator": ITEM_SEPARATOR, "key_separator": KEY_SEPARATOR, "whitespace_flexible": False}
    if isinstance(schema, bool):
        schema = {} if schema else {"not": {}}
    return "%json " + json.dumps({**schema, "x-guidance": layout}, ensure_ascii=False)


def tool_call_lark(spec: ToolCalls) -> str:
    """The lark grammar for `spec` (check_tool_calls must pass; tool_choice must not be 'none')."""
    check_tool_calls(spec)
    if spec.tool_choice == "none":
        raise GrammarError("tool_choice 'none' constrains nothing: attach no grammar", "tool_choice")
    named = spec.tool_choice not in _MODES
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    lines = ["%llguidance {}"]
    many = spec.parallel and not named
    more = f' ({_lark_str(CALL_SEPARATOR + CALL_PREFIX)} body)*' if many else ""
    if spec.tool_choice == "auto":
        # PROSE: any text without the open tag; HEAD (lazy): prose up to the first open tag.
        never_open = f"~/(?s:.*){_regex_escape(TOOL_CALL_OPEN)}(?s:.*)/"
        lines += [
            f"start: PROSE | head body{more}",
            f"PROSE: /(?s:.*)/ & {never_open}",
            f"head[lazy]: /(?s:.*){_regex_escape(CALL_PREFIX)}/",
        ]
    else:
        lines.append(f"start: {_lark_str(CALL_PREFIX)} body{more}")
    lines.append("body: (" + " | ".join(f"call_{i}" for i in range(len(tools))) + f") {_lark_str(CALL_SUFFIX)}")
    for i, tool in enumerate(tools):
        lines.append(f'call_{i}: {_lark_str(call_head(tool.name))} args_{i} "}}"')
        lines.append(f"args_{i}: {_arguments_rule(tool_arguments_schema(tool))}")
    return "\n".join(lines) + "\n"


def _regex_escape(text: str) -> str:
    """Escape for a lark /regex/ (the rust regex syntax, plus the '/' delimiter)."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch in r"\.+*?()|[]{}^$#&-~/":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)
