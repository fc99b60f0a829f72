"""The hermes streaming parser: model output text → content deltas and OpenAI tool-call events.

A call starts at one of two triggers:
    <tool_call>\\n{"name": "f", "arguments": {...}}\\n</tool_call>     the format's own tag
    {"name": "f", "arguments": {...}}                                  a bare call object, often in a
                                                                       ```json fence (auto mode only)
The grammar (hermes.py) makes every trigger in the text a real call, so the parser never has to
guess: content is the text outside calls, with the fence around a bare call dropped.

Text that might still grow into a trigger (`<tool_ca`, `` ```json\\n{"na ``) is held back until it is
decided. Inside a call, argument text is released up to (not including) its last '}' so far: the
wrapper's closing '}' is the last one in the call, so what was released is always a prefix of the
arguments.
"""

from __future__ import annotations

import json
import re

from sluicegate.grammars.tool_formats.base import (
    ContentDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
)

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
CALL_SUFFIX = "\n" + TOOL_CALL_CLOSE

# `{"name": "<name>", "arguments": ` — the part of a call before its arguments (any JSON spacing).
CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')
BARE_TRIGGER = re.compile(r'\{\s*"name"')  # a bare call object starts here (the grammar's trigger)
_FENCE_OPEN = re.compile(r"```(?:json)?\s*$")  # the fence a bare call often sits in
# A tail that may still grow into a bare trigger, fenced or not ("``", "```json\n", "{", '{"na').
_BARE_PREFIX = re.compile(r'(?:`{1,2}|```(?:j|js|jso)?|(?:```(?:json)?\s*)?(?:\{\s*(?:"(?:n|na|nam|name)?)?)?)$')
_DECODER = json.JSONDecoder()


def _hold_len(text: str) -> int:
    """Length of the longest suffix of `text` that could still grow into a trigger."""
    tag = next((n for n in range(min(len(text), len(TOOL_CALL_OPEN) - 1), 0, -1)
                if TOOL_CALL_OPEN.startswith(text[-n:])), 0)
    bare = _BARE_PREFIX.search(text)
    return max(tag, len(text) - bare.start() if bare else 0)


class HermesParser:
    """Feed text deltas; get content deltas and tool-call events, in order."""

    def __init__(self) -> None:
        self._buffer = ""  # undecided text (content, or the body of the open call)
        self._in_call = False
        self._bare = False  # the open call is a bare object (no tags)
        self._fenced = False  # after a bare call: a closing ``` fence that follows is dropped
        self._after_call = False  # after a tagged call: the newlines that follow are dropped
        self._index = -1  # index of the current / last call
        self._started = False  # ToolCallStart sent for the current call
        self._args_start = 0  # offset of the arguments inside _buffer once started
        self._args_sent = 0  # characters of the arguments already released
        self._name = ""  # name of the current call once started
        self.calls: list[tuple[str, str]] = []  # (name, arguments JSON text) of finished calls

    def feed(self, delta: str) -> list[ToolCallEvent]:
        self._buffer += delta
        events: list[ToolCallEvent] = []
        while self._step_call(events) if self._in_call else self._step_content(events):
            pass
        return events

    def finish(self) -> list[ToolCallEvent]:
        """End of the stream: flush what is held back. A cut call keeps its arguments as far as
        they got, or exactly its arguments object when that object was complete."""
        events: list[ToolCallEvent] = []
        if self._after_call:
            self._buffer = self._buffer.lstrip("\n")
        if self._in_call and (self._started or self._start(events)):
            end = self._args_end()
            rest = self._buffer[self._args_start :]
            self._end_call(events, rest.rstrip() if end is None else self._buffer[self._args_start : end])
        elif self._in_call:  # not a call after all
            self._index -= 1
            events.append(ContentDelta(("" if self._bare else TOOL_CALL_OPEN) + self._buffer))
        elif self._buffer and not (self._fenced and "```".startswith(self._buffer.strip())):
            events.append(ContentDelta(self._buffer))
        self._buffer, self._in_call = "", False
        return events

    # ---- content ---------------------------------------------------------------------------------
    def _step_content(self, events: list[ToolCallEvent]) -> bool:
        if self._after_call:  # the newline between two calls is neither content nor call
            self._buffer = self._buffer.lstrip("\n")
            if not self._buffer:
                return False
            self._after_call = False
        if self._fenced:  # the fence closing a bare call is not content
            stripped = self._buffer.lstrip()
            if stripped.startswith("```"):
                self._buffer = stripped[3:]
            elif not stripped or "```".startswith(stripped):
                return False
            self._fenced = False
        tag = self._buffer.find(TOOL_CALL_OPEN)
        bare = BARE_TRIGGER.search(self._buffer)
        if tag < 0 and bare is None:
            keep = _hold_len(self._buffer)
            text, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep :]
            if text:
                events.append(ContentDelta(text))
            return False
        if bare is not None and (tag < 0 or bare.start() < tag):
            before = self._buffer[: bare.start()]
            fence = _FENCE_OPEN.search(before)
            content = before[: fence.start()] if fence else before
            self._fenced = True  # the grammar lets a bare call close a fence, opened or not
            self._buffer = self._buffer[bare.start() :]
            self._bare = True
        else:
            content = self._buffer[:tag]
            self._buffer = self._buffer[tag + len(TOOL_CALL_OPEN) :]
            self._bare = False
        if content:
            events.append(ContentDelta(content))
        self._in_call, self._started, self._args_sent = True, False, 0
        self._index += 1
        return True

    # ---- calls -----------------------------------------------------------------------------------
    def _start(self, events: list[ToolCallEvent]) -> bool:
        head = CALL_HEAD.match(self._buffer)
        if head is None:
            return False
        try:
            self._name = json.loads(head.group(1))
        except ValueError:  # a raw newline or a bad escape: not a JSON name, so not a call head
            return False
        events.append(ToolCallStart(self._index, self._name))
        self._started, self._args_start = True, head.end()
        return True

    def _args_end(self) -> int | None:
        """End offset of the arguments object in _buffer, once it is complete."""
        try:
            _, end = _DECODER.raw_decode(self._buffer, self._args_start)
        except ValueError:
            return None
        return int(end)

    def _end_call(self, events: list[ToolCallEvent], args: str) -> None:
        if len(args) > self._args_sent:
            events.append(ToolCallArgs(self._index, args[self._args_sent :]))
        events.append(ToolCallEnd(self._index))
        self.calls.append((self._name, args))
        self._in_call = False

    def _step_call(self, events: list[ToolCallEvent]) -> bool:
        if not self._started and not self._start(events):
            return False if self._bare else self._close_unstructured(events)
        if self._args_sent == 0:  # JSON spacing before the arguments is not part of them
            while self._args_start < len(self._buffer) and self._buffer[self._args_start].isspace():
                self._args_start += 1
        if self._bare:
            return self._step_bare(events)
        close = self._buffer.find(TOOL_CALL_CLOSE, self._args_start)
        args = self._buffer[self._args_start : close if close >= 0 else len(self._buffer)]
        if close < 0:
            self._release(events, args)
            return False
        args = args.rstrip()
        args = args[:-1].rstrip() if args.endswith("}") else args  # the wrapper's closing brace
        self._end_call(events, args)
        self._buffer = self._buffer[close + len(TOOL_CALL_CLOSE) :]
        self._after_call = True
        return True

    def _step_bare(self, events: list[ToolCallEvent]) -> bool:
        """A bare call ends with its wrapper object's closing brace."""
        try:
            _, end = _DECODER.raw_decode(self._buffer)  # the buffer starts at the wrapper's '{'
        except ValueError:
            self._release(events, self._buffer[self._args_start :])
            return False
        args = self._buffer[self._args_start : end].rstrip()
        self._end_call(events, args[:-1].rstrip())
        self._buffer = self._buffer[end:]
        return True

    def _release(self, events: list[ToolCallEvent], args: str) -> None:
        releasable = max(args.rfind("}"), 0)
        if releasable > self._args_sent:
            events.append(ToolCallArgs(self._index, args[self._args_sent : releasable]))
            self._args_sent = releasable

    def _close_unstructured(self, events: list[ToolCallEvent]) -> bool:
        """A tagged call whose head is not (yet) `{"name": …, "arguments": ` — decide at its close tag."""
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
