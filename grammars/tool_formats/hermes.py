"""The hermes tool-call format (Qwen2.5, Qwen3, Hermes, SmolLM3), and the fallback for templates
that name no format.

A call is written as
    <tool_call>\\n{"name": "get_weather", "arguments": {"city": "Paris"}}\\n</tool_call>
and several calls follow each other separated by a newline. In auto mode a bare call object
(`{"name": …, "arguments": …}`, often in a ```json fence) is a call too: that is what these models
write when they forget the tags. Prose (the message content) may come before the first call. Tool
results go back as <tool_response> blocks in a user turn (Qwen2.5's layout). The streaming parser
lives in hermes_parser.py. Every rendering function is pure, so a conversation renders to the same text every turn
and the prefix cache keeps hitting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.specs import ToolCalls
from sluicegate.grammars.tool_formats.hermes_parser import (
    CALL_SUFFIX,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    HermesParser,
)
from sluicegate.grammars.tool_formats.lark_util import json_call_rules, lark_str, regex_escape

CALL_PREFIX = TOOL_CALL_OPEN + "\n"  # what the grammar forces before the call's JSON
FENCE_CLOSE = "\n```"  # closes the fence a bare call object may sit in
CALL_SEPARATOR = "\n"  # between two parallel calls
ITEM_SEPARATOR = ", "  # JSON layout inside a call: json.dumps' default, what hermes models write
KEY_SEPARATOR = ": "


def call_head(name: str) -> str:
    """The exact text the grammar forces between CALL_PREFIX and a tool's arguments."""
    return '{"name"' + call_head_rest(name)


def call_head_rest(name: str) -> str:
    """call_head after `{"name"` (the bare-object trigger already wrote that part)."""
    return KEY_SEPARATOR + json.dumps(name, ensure_ascii=False) + ITEM_SEPARATOR + '"arguments"' + KEY_SEPARATOR


def hermes_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    """required: calls only; a named tool: exactly one call of it; auto: free prose, and once the
    model writes a trigger the call is exact. Triggers: `<tool_call>`, and a bare call object
    `{"name"` (what hermes-family models write when they put a call in a ```json fence); prose
    never holds a trigger, so every call the model starts comes back as a tool call."""
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    lines = ["%llguidance {}"]
    more = f" ({lark_str(CALL_SEPARATOR + CALL_PREFIX)} body)*" if spec.parallel and not named else ""
    if spec.tool_choice == "auto":
        bare = r'\{\s*"name"'
        lines += [
            f"start: PROSE | head body{more} | bare_head bare_body",
            f"PROSE: /(?s:.*)/ & ~/(?s:.*)({regex_escape(TOOL_CALL_OPEN)}|{bare})(?s:.*)/",
            f"head[lazy]: /(?s:.*){regex_escape(CALL_PREFIX)}/",  # prose up to the first trigger
            f"bare_head[lazy]: /(?s:.*){bare}/",
            "bare_body: (" + " | ".join(f"bare_{i}" for i in range(len(tools))) + f") {lark_str(FENCE_CLOSE)}?",
        ]
        for i, tool in enumerate(tools):
            lines.append(f'bare_{i}: {lark_str(call_head_rest(tool.name))} args_{i} "}}"')
    else:
        lines.append(f"start: {lark_str(CALL_PREFIX)} body{more}")
    lines.append("body: (" + " | ".join(f"call_{i}" for i in range(len(tools))) + f") {lark_str(CALL_SUFFIX)}")
    lines += json_call_rules([call_head(t.name) for t in tools], schemas, ITEM_SEPARATOR, KEY_SEPARATOR)
    return "\n".join(lines) + "\n"


TOOL_RESPONSE_START = "<tool_response>"
TOOL_RESPONSE_END = "</tool_response>"

_PROMPT_HEAD = (
    "# Tools\n\n"
    "You may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_PROMPT_TAIL = (
    "\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    f"{TOOL_CALL_OPEN}{TOOL_CALL_CLOSE} XML tags:\n"
    f"{TOOL_CALL_OPEN}\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n'
    f"{TOOL_CALL_CLOSE}"
)


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The tool block appended to the system prompt; tools as OpenAI sends them, in their order.

    '<' and '>' are written as JSON escapes (same JSON value), so a description or property name
    cannot close the <tools> block, open a <tool_call> or spell a special token like <|im_end|>."""
    lines = [_tag_safe(json.dumps(tool, ensure_ascii=False)) for tool in tools]
    return _PROMPT_HEAD + "".join("\n" + line for line in lines) + _PROMPT_TAIL


def _tag_safe(json_text: str) -> str:
    # '<' and '>' only ever occur inside JSON strings, where \u003c / \u003e mean the same
    return json_text.replace("<", "\\u003c").replace(">", "\\u003e")


def render_tool_call(name: str, arguments: str) -> str:
    """One call exactly as the grammar makes the model write it; `arguments` is the JSON string
    the client sent back, verbatim."""
    return CALL_PREFIX + call_head(name) + arguments + "}" + CALL_SUFFIX


def render_assistant_content(content: str, calls: Sequence[tuple[str, str]]) -> str:
    parts = [content] if content else []
    parts.extend(render_tool_call(name, args) for name, args in calls)
    return CALL_SEPARATOR.join(parts)


def render_tool_results(results: Sequence[str]) -> str:
    return "\n".join(f"{TOOL_RESPONSE_START}\n{r}\n{TOOL_RESPONSE_END}" for r in results)


class HermesFormat:
    name = "hermes"
    call_end: str | None = TOOL_CALL_CLOSE

    def matches_template(self, chat_template: str) -> bool:
        return TOOL_CALL_OPEN in chat_template

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return hermes_lark(spec, schemas)

    def parser(self) -> HermesParser:
        return HermesParser()

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return tools_system_prompt(tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        return render_assistant_content(content, calls)

    def render_tool_results(self, results: Sequence[str]) -> str:
        return render_tool_results(results)


HERMES = HermesFormat()
