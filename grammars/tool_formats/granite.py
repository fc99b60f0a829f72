"""IBM Granite 3.x tool calls: a JSON list after a special token, closed by the end of the turn,

    <|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]

Granite's templates list the tools in an `available_tools` turn and return results in a
`tool_response` turn (<|start_of_role|>…<|end_of_role|>). The list machinery is json_list.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.tool_formats.json_list import JsonListFormat

TOOL_CALL = "<|tool_call|>"
_PROMPT = (
    "You are a helpful assistant with access to the following function calls. Your task is to produce a "
    "list of function calls necessary to generate response to the user utterance. Use the following "
    "function calls as required. Write them as " + TOOL_CALL + '[{"name": ..., "arguments": {...}}].\n\n'
)


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    return _PROMPT + "\n\n".join(json.dumps(t, ensure_ascii=False, indent=4) for t in tools)


def render_tool_results(results: Sequence[str]) -> str:
    return "\n".join(results)


GRANITE = JsonListFormat(
    name="granite", open_token=TOOL_CALL, close_token=None, markers=(TOOL_CALL, "<|start_of_role|>"),
    excludes=("<|/tool_call|>",), prompt=tools_system_prompt, results=render_tool_results)
