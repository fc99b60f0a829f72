"""Tool-call formats, one file each behind the ToolFormat interface (base.py): hermes, llama3_json,
pythonic, mistral and mistral_args, qwen3_coder, phi4_mini, granite (both on json_list.py),
harmony, deepseek_v3 and deepseek_v31.

`format_for_template` picks a model's format from its chat template once at load; a template that
names no known format gets hermes, with a logged note. `get_format` resolves an explicit choice
(--tool-call-format).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sluicegate.grammars.tool_formats.base import (
    ContentDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallParser,
    ToolCallStart,
    ToolFormat,
    parse_all,
)
from sluicegate.grammars.tool_formats.deepseek import DEEPSEEK_V3, DEEPSEEK_V31
from sluicegate.grammars.tool_formats.granite import GRANITE
from sluicegate.grammars.tool_formats.harmony import HARMONY
from sluicegate.grammars.tool_formats.hermes import HERMES
from sluicegate.grammars.tool_formats.llama3_json import LLAMA3_JSON
from sluicegate.grammars.tool_formats.mistral import MISTRAL, MISTRAL_ARGS
from sluicegate.grammars.tool_formats.phi4_mini import PHI4_MINI
from sluicegate.grammars.tool_formats.pythonic import PYTHONIC
from sluicegate.grammars.tool_formats.qwen3_coder import QWEN3_CODER

log = logging.getLogger(__name__)

# Detection order: the first format whose markers the template holds wins; hermes last, as the
# fallback. Qwen3-Coder's template also writes <tool_call> (hermes' marker), so it comes before
# hermes; mistral_args' templates also hold [TOOL_CALLS] (mistral's), so it comes before mistral;
# pythonic prompts sit in Llama templates, so pythonic comes before llama3_json.
FORMATS: dict[str, ToolFormat] = {
    fmt.name: fmt
    for fmt in (
        HARMONY, DEEPSEEK_V3, DEEPSEEK_V31, QWEN3_CODER, MISTRAL_ARGS, MISTRAL, PHI4_MINI, GRANITE,
        PYTHONIC, LLAMA3_JSON, HERMES,
    )
}
DEFAULT_FORMAT = HERMES.name


def get_format(name: str) -> ToolFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown tool-call format {name!r} (choose from {', '.join(FORMATS)})") from None


# A tokenizer whose template shows no tool syntax (a template that ignores tools) may still hold a
# family's tool tokens: these name the format then. (DeepSeek's tokens do not tell V3 from V3.1.)
TOKEN_MARKERS: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"<|channel|>", "<|message|>", "<|call|>"}), HARMONY.name),
    (frozenset({"[TOOL_CALLS]", "[ARGS]"}), MISTRAL_ARGS.name),
    (frozenset({"[TOOL_CALLS]"}), MISTRAL.name),
    (frozenset({"<|tool_call|>", "<|/tool_call|>"}), PHI4_MINI.name),
    (frozenset({"<|tool_call|>", "<|start_of_role|>"}), GRANITE.name),
    (frozenset({"<|python_tag|>"}), LLAMA3_JSON.name),
)


def format_for_template(chat_template: str | None, tokens: Collection[str] = ()) -> ToolFormat:
    """The format the chat template writes calls in; else the one the tokenizer's added `tokens`
    name; else hermes."""
    for fmt in FORMATS.values():
        if chat_template and fmt.matches_template(chat_template):
            return fmt
    for markers, name in TOKEN_MARKERS:
        if markers <= set(tokens):
            log.info("the chat template names no tool-call format; the tokenizer's tokens name %s", name)
            return FORMATS[name]
    log.info("the chat template names no known tool-call format; tool calls use %s", DEFAULT_FORMAT)
    return FORMATS[DEFAULT_FORMAT]


def parse_tool_calls(text: str, format_name: str = DEFAULT_FORMAT) -> tuple[str, list[tuple[str, str]]]:
    """Whole model output → (content text, [(tool name, arguments JSON text)])."""
    return parse_all(get_format(format_name).parser(), text)


__all__ = [
    "DEFAULT_FORMAT",
    "FORMATS",
    "ContentDelta",
    "ToolCallArgs",
    "ToolCallEnd",
    "ToolCallEvent",
    "ToolCallParser",
    "ToolCallStart",
    "ToolFormat",
    "format_for_template",
    "get_format",
    "parse_tool_calls",
]
