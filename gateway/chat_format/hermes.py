"""The hermes tool-call format, as text: the tool system prompt and how calls and results render.

Used for chat templates that ignore `tools` (SmolLM2's): the gateway writes the tools into the
system prompt itself, renders earlier assistant tool calls as `<tool_call>` blocks and tool results
as `<tool_response>` blocks in a user turn (Qwen2.5's layout). Every function here is pure, so a
conversation renders to the same text every turn and the prefix cache keeps hitting.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.tool_format import (
    CALL_PREFIX,
    CALL_SEPARATOR,
    CALL_SUFFIX,
    TOOL_CALL_CLOSE,
    TOOL_CALL_OPEN,
    call_head,
)

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
    """One call exactly as the grammar makes the model write it (grammars/tool_format.py);
    `arguments` is the JSON string the client sent back, verbatim."""
    return CALL_PREFIX + call_head(name) + arguments + "}" + CALL_SUFFIX


def render_assistant_content(content: str, calls: Sequence[tuple[str, str]]) -> str:
    """An assistant turn: its text (if any), then its calls, as the grammar made the model write them."""
    parts = [content] if content else []
    parts.extend(render_tool_call(name, args) for name, args in calls)
    return CALL_SEPARATOR.join(parts)


def render_tool_results(results: Sequence[str]) -> str:
    """Consecutive tool results, merged into one user turn."""
    return "\n".join(f"{TOOL_RESPONSE_START}\n{r}\n{TOOL_RESPONSE_END}" for r in results)
