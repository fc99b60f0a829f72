"""The hermes tool-call format: its constants, and parsers from model text back to tool calls.

A call is written as
    <tool_call>\\n{"name": "get_weather", "arguments": {"city": "Paris"}}\\n</tool_call>
and several calls follow each other separated by a newline. Prose (the message content) may come
before the first call. tool_grammar.py builds the grammar that forces exactly this shape;
`ToolCallStreamParser` turns streamed text back into content deltas and OpenAI-style tool-call
events (start with name, argument fragments, end), and `parse_tool_calls` does it in one go.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int  # 0-based position of the call in this message
    name: str


@dataclass(frozen=True)
class ToolCallArgs:
    index: int
    fragment: str  # the fragments of one call concatenate to its arguments JSON text


@dataclass(frozen=True)
class ToolCallEnd:
    index: int


ToolCallEvent = ContentDelta | ToolCallStart | ToolCallArgs | ToolCallEnd


def _open_tag_prefix_len(text: str) -> int:
    """Length of the longest suffix of `text` that could still grow into TOOL_CALL_OPEN."""
    for n in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1):
        if TOOL_CALL_OPEN.startswith(text[-n:]):
            return n
    return 0


class ToolCallStreamParser:
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


def parse_tool_calls(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Whole model output → (content text, [(tool name, arguments JSON text)])."""
    parser = ToolCallStreamParser()
    events = parser.feed(text) + parser.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    if parser.calls:
        content = content.rstrip()
    return content, parser.calls
