"""The Llama 3.1-3.3 JSON tool-call format:

    {"name": "get_weather", "parameters": {"city": "Paris"}}
    <|python_tag|>{"name": "get_weather", "parameters": {"city": "Paris"}}

Meta's templates write a call as the whole assistant message (the bare object); the models also
open calls with the special token <|python_tag|>, which may follow prose. Parallel calls are
separated by "; " (the separator Llama 3 models use when asked for several calls; Meta's template
itself renders one call per turn). Tool results come back in the `ipython` role.

In auto mode a reply is either a call from its first character, prose that does not open with a
call object, or prose then <|python_tag|> and the calls. A reply cannot start as prose with
`{"name"`: that is always a call, held to the grammar.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.specs import ToolCalls
from sluicegate.grammars.tool_formats.base import ContentDelta, ToolCallEvent
from sluicegate.grammars.tool_formats.json_call import JsonCallReader, call_head, call_object
from sluicegate.grammars.tool_formats.lark_util import (
    json_call_rules,
    lark_str,
    prose_without,
    special,
)
from sluicegate.grammars.tool_formats.stream_util import BufferedParser

PYTHON_TAG = "<|python_tag|>"
ARGS_KEY = "parameters"
CALL_SEPARATOR = "; "
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "  # json.dumps' layout, what the template's tojson writes
# prose that opens like a call object is not prose (any spacing, so no call slips by as text)
_PROSE = prose_without([PYTHON_TAG], r'/(?s:.+)/ & ~/[ \t\r\n]*\{[ \t\r\n]*"name"(?s:.*)/')


def llama3_json_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    more = f" ({lark_str(CALL_SEPARATOR)} call)*" if spec.parallel and not named else ""
    lines = ["%llguidance {}"]
    if spec.tool_choice == "auto":
        lines += [f"start: TEXT? ({special(PYTHON_TAG)} calls)? | calls", f"TEXT: {_PROSE}"]
    else:
        lines.append(f"start: {special(PYTHON_TAG)}? calls")
    lines.append(f"calls: call{more}")
    lines.append("call: " + " | ".join(f"call_{i}" for i in range(len(tools))))
    lines += json_call_rules([call_head(t.name, ARGS_KEY) for t in tools], schemas, ITEM_SEPARATOR, KEY_SEPARATOR)
    return "\n".join(lines) + "\n"


class Llama3JsonParser(BufferedParser):
    """A reply that opens with `{` is read as calls; otherwise prose until <|python_tag|>, then
    calls. Calls are separated by ';' or newlines."""

    def __init__(self) -> None:
        super().__init__()
        self._state = "start"  # start | content | calls | call
        self._reader: JsonCallReader | None = None

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state == "content":
            if self._content_until(events, [PYTHON_TAG]) is None:
                return False
            self._state = "calls"
            return True
        if self._state == "call":
            return self._step_call(events)
        text = self.buffer.lstrip()
        if self._state == "start":
            if not text or (PYTHON_TAG.startswith(text) and text != PYTHON_TAG):
                return False  # undecided: only spacing, or maybe <|python_tag|> arriving
            if text.startswith(PYTHON_TAG):
                self.buffer, self._state = text[len(PYTHON_TAG) :], "calls"
            else:
                self._state = "calls" if text.startswith("{") else "content"
            return True
        # calls: skip separators; `{` opens the next call; anything else is prose again
        stripped = text.lstrip(";").lstrip()
        if stripped != text or not text:
            self.buffer = stripped
            return bool(stripped)
        if text.startswith("{"):
            self.index += 1
            self._reader = JsonCallReader(self.index)
            self.buffer, self._state = text, "call"
            return True
        self._state = "content"
        return True

    def _step_call(self, events: list[ToolCallEvent]) -> bool:
        assert self._reader is not None
        piece, self.buffer = self.buffer, ""
        found, end = self._reader.feed(piece)
        events += found
        if end is None:
            return False
        self.buffer = piece[end:]
        self._end_call(events)
        return True

    def _end_call(self, events: list[ToolCallEvent]) -> None:
        assert self._reader is not None
        if self._reader.rejected:  # `{...}` that is no call: it was prose
            self.index -= 1
            events.append(ContentDelta(self._reader.text))
            self._state = "content"
        else:
            assert self._reader.call is not None
            self.calls.append(self._reader.call)
            self._state = "calls"
        self._reader = None

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state == "call" and self._reader is not None:
            events += self._reader.finish()
            self._end_call(events)
        elif self._state in ("content", "start") and self.buffer:
            events.append(ContentDelta(self.buffer))


_PROMPT = (
    "Given the following functions, please respond with a JSON for a function call with its proper "
    "arguments that best answers the given prompt.\n\n"
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its '
    "value}. Do not use variables. Separate several calls with \"; \".\n\n"
)


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """Meta's tool instructions, with each tool as indented JSON (the template's tojson(indent=4))."""
    return _PROMPT + "\n\n".join(json.dumps(t, ensure_ascii=False, indent=4) for t in tools)


def render_assistant_content(content: str, calls: Sequence[tuple[str, str]]) -> str:
    """Calls alone are the bare objects (Meta's layout); after prose they follow <|python_tag|>,
    the only way the grammar lets prose lead to a call."""
    written = CALL_SEPARATOR.join(call_object(name, args, ARGS_KEY) for name, args in calls)
    if not calls:
        return content
    return content + PYTHON_TAG + written if content else written


class Llama3JsonFormat:
    name = "llama3_json"
    call_end: str | None = None  # a call ends with its object's '}': no closing text

    def matches_template(self, chat_template: str) -> bool:
        return "<|start_header_id|>" in chat_template and (
            PYTHON_TAG in chat_template or '"parameters"' in chat_template)

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return llama3_json_lark(spec, schemas)

    def parser(self) -> Llama3JsonParser:
        return Llama3JsonParser()

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return tools_system_prompt(tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        return render_assistant_content(content, calls)

    def render_tool_results(self, results: Sequence[str]) -> str:
        return "\n".join(results)


LLAMA3_JSON = Llama3JsonFormat()
