"""Phi-4-mini's tool calls: a JSON list between two special tokens,

    <|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]<|/tool_call|>

Tools reach the model as <|tool|>{...}<|/tool|> blocks in the system turn and results come back
after <|tool_response|>, as Phi-4-mini's template writes them. The list machinery is json_list.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.tool_formats.json_list import JsonListFormat

TOOL_CALL, TOOL_CALL_END = "<|tool_call|>", "<|/tool_call|>"
TOOL, TOOL_END = "<|tool|>", "<|/tool|>"
TOOL_RESPONSE = "<|tool_response|>"


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    blocks = "".join(TOOL + json.dumps(t.get("function", t), ensure_ascii=False) + TOOL_END for t in tools)
    return (blocks + "You are a helpful assistant with some tools.\nTo use tools, respond in this format: "
            + TOOL_CALL + '[{"name": "foo", "arguments": {"a": 1}}]' + TOOL_CALL_END)


def render_tool_results(results: Sequence[str]) -> str:
    return "\n".join(TOOL_RESPONSE + r for r in results)


PHI4_MINI = JsonListFormat(
    name="phi4_mini", open_token=TOOL_CALL, close_token=TOOL_CALL_END, markers=(TOOL_CALL, TOOL_CALL_END),
    excludes=(), prompt=tools_system_prompt, results=render_tool_results)
