"""The hermes tool-call format (Qwen2.5, Qwen3, Hermes, SmolLM3), and the fallback for templates
that name no format.

A call is written as
    <tool_call>\\n{"name": "get_weather", "arguments": {"city": "Paris"}}\\n</tool_call>
and several calls follow each other separated by a newline. Prose (the message content) may come
before the first call. Tool results go back as <tool_response> blocks in a user turn (Qwen2.5's
layout). Every rendering function is pure, so a conversation renders to the same text every turn
and the prefix cache keeps hitting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.specs import ToolCalls
from sluicegate.grammars.tool_formats.base import (
    ContentDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
)
from sluicegate.grammars.tool_formats.lark_util import json_rule, lark_str, regex_escape

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
CALL_PREFIX = TOOL_CALL_OPEN + "\n"  # what the grammar forces before the call's JSON
CALL_SUFFIX = "\n" + TOOL_CALL_CLOSE  # … and after it
CALL_SEPARATOR = "\n"  # between two parallel calls
ITEM_SEPARATOR = ", "  # JSON layout inside a call: json.dumps' default, what hermes models write
KEY_SEPARATOR = ": "

# `{"name": "<name>", "arguments": ` — the part of a call before its arguments (any JSON spacing).
_CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')


def call_head(name: str) -> str:
    """The exact text the grammar forces between CALL_PREFIX and a tool's arguments."""
    return '{"name"' + KEY_SEPARATOR + json.dumps(name, ensure_ascii=False) + ITEM_SEPARATOR + '"arguments"' + KEY_SEPARATOR


def _open_tag_prefix_len(text: str) -> int:
    """Length of the longest suffix of `text` that could still grow into TOOL_CALL_OPEN."""
    for n in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-n:]):
            return n
    return 0


class HermesParser:
    """Feed text deltas; get content deltas and tool-call events, in order.

    Text that might be the start of `<tool_call>` is held back until it is decided. Inside a call,
    argument text is released up to (not including) its last '}' so far: the call's closing '}'
    is the last one in the call, so what was released is always a prefix of the arguments.
    """

    def __init__(self) -> None:
        self._buffer = ""  # undecided text (content, or the body of the open call)
        self._in_call = False
        self._index = -1  # index of the current / last call
        self._started = False  # ToolCallStart sent for the current call
        self._args_start = 0  # offset of the arguments inside _buffer once started
        self._args_sent = 0  # characters of the arguments already released
        self._name = ""  # name of the current call once started
        self.calls: list[tuple[str, str]] = []  # (name, arguments JSON text) of finished calls

    def feed(self, delta: str) -> list[ToolCallEvent]:
        self._buffer += delta
        events: list[ToolCallEvent] = []
        while True:
            progressed = self._step_call(events) if self._in_call else self._step_content(events)
            if not progressed:
                return events

    def finish(self) -> list[ToolCallEvent]:
        """End of the stream: flush what is held back (an unclosed call is closed as far as it got)."""
        events: list[ToolCallEvent] = []
        if self._in_call:
            body = self._buffer
            if self._started or _CALL_HEAD.match(body):
                self._buffer += CALL_SUFFIX
                self._step_call(events)
            else:
                events.append(ContentDelta(TOOL_CALL_OPEN + body))
        elif self._buffer:
            events.append(ContentDelta(self._buffer))
        self._buffer = ""
        self._in_call = False
        return events

    def _step_content(self, events: list[ToolCallEvent]) -> bool:
        at = self._buffer.find(TOOL_CALL_OPEN)
        if at < 0:
            keep = _open_tag_prefix_len(self._buffer)
            text, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep :]
            if text:
                events.append(ContentDelta(text))
            return False
        if at > 0:
            events.append(ContentDelta(self._buffer[:at]))
        self._buffer = self._buffer[at + len(TOOL_CALL_OPEN) :]
        self._in_call, self._started, self._args_sent = True, False, 0
        self._index += 1
        return True

    def _step_call(self, events: list[ToolCallEvent]) -> bool:
        if not self._started:
            head = _CALL_HEAD.match(self._buffer)
            if head is None:
                return self._close_unstructured(events)
            self._name = json.loads(head.group(1))
            events.append(ToolCallStart(self._index, self._name))
            self._started, self._args_start = True, head.end()
        if self._args_sent == 0:  # JSON spacing before the arguments is not part of them
            while self._args_start < len(self._buffer) and self._buffer[self._args_start].isspace():
                self._args_start += 1
        close = self._buffer.find(TOOL_CALL_CLOSE, self._args_start)
        args = self._buffer[self._args_start : close if close >= 0 else len(self._buffer)]
        if close >= 0:
            args = args.rstrip()
            args = args[:-1].rstrip() if args.endswith("}") else args  # the wrapper's closing brace
        releasable = len(args) if close >= 0 else max(args.rfind("}"), 0)
        if releasable > self._args_sent:
            events.append(ToolCallArgs(self._index, args[self._args_sent : releasable]))
            self._args_sent = releasable
        if close < 0:
            return False
        events.append(ToolCallEnd(self._index))
        self.calls.append((self._name, args))
        self._buffer = self._buffer[close + len(TOOL_CALL_CLOSE) :].lstrip("\n")
        self._in_call = False
        return True

    def _close_unstructured(self, events: list[ToolCallEvent]) -> bool:
        """A call whose head is not (yet) `{"name": …, "arguments": ` — decide at its close tag."""
        close = self._buffer.find(TOOL_CALL_CLOSE)
        if close < 0:
            return False
        body = self._buffer[:close]
        self._buffer = self._buffer[close + len(TOOL_CALL_CLOSE) :]
        self._in_call = False
        try:
            call = json.loads(body)
            name, arguments = call["name"], call.get("arguments", call.get("parameters", {}))
            if not isinstance(name, str):
                raise TypeError("name")
        except (ValueError, KeyError, TypeError):  # not a tool call after all: it is content
            self._index -= 1
            events.append(ContentDelta(TOOL_CALL_OPEN + body + TOOL_CALL_CLOSE))
            return True
        args = json.dumps(arguments, ensure_ascii=False)
        events += [ToolCallStart(self._index, name), ToolCallArgs(self._index, args), ToolCallEnd(self._index)]
        self.calls.append((name, args))
        return True


def hermes_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    """required: calls only; a named tool: exactly one call of it; auto: free prose, and once the
    model writes `<tool_call>` the call must be exact (the prose holds no other `<tool_call>`)."""
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    lines = ["%llguidance {}"]
    more = f" ({lark_str(CALL_SEPARATOR + CALL_PREFIX)} body)*" if spec.parallel and not named else ""
    if spec.tool_choice == "auto":
        # PROSE: any text without the open tag; HEAD (lazy): prose up to the first open tag.
        never_open = f"~/(?s:.*){regex_escape(TOOL_CALL_OPEN)}(?s:.*)/"
        lines += [
            f"start: PROSE | head body{more}",
            f"PROSE: /(?s:.*)/ & {never_open}",
            f"head[lazy]: /(?s:.*){regex_escape(CALL_PREFIX)}/",
        ]
    else:
        lines.append(f"start: {lark_str(CALL_PREFIX)} body{more}")
    lines.append("body: (" + " | ".join(f"call_{i}" for i in range(len(tools))) + f") {lark_str(CALL_SUFFIX)}")
    for i, schema in enumerate(schemas):
        lines.append(f'call_{i}: {lark_str(call_head(tools[i].name))} args_{i} "}}"')
        lines.append(f"args_{i}: {json_rule(schema, ITEM_SEPARATOR, KEY_SEPARATOR)}")
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
