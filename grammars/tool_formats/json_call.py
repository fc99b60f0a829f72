"""One JSON call object, `{"name": "f", "arguments": {...}}` (or "parameters"), read as it streams.

Used by every format whose call is such an object: llama3_json, and the JSON lists of mistral,
phi4_mini and granite. The call's name is announced once `{"name": "...", "arguments": ` has
arrived; from then on the arguments object's text is released as it comes (it is exactly the
arguments, so any prefix of it is a prefix of the final arguments). A call written another way
(keys in another order) is decided when its object closes.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sluicegate.grammars.tool_formats.base import ToolCallArgs, ToolCallEnd, ToolCallEvent, ToolCallStart
from sluicegate.grammars.tool_formats.stream_util import ValueScanner

# `{"name": "<name>", "arguments": ` — the part of a call before its arguments (any JSON spacing)
CALL_HEAD = re.compile(r'\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"(?:arguments|parameters)"\s*:\s*')


def call_head(name: str, args_key: str = "arguments") -> str:
    """The exact text the grammars force before a call's arguments (json.dumps' spacing)."""
    return '{"name": ' + json.dumps(name, ensure_ascii=False) + f', "{args_key}": '


def call_object(name: str, arguments: str, args_key: str = "arguments") -> str:
    """One call as the grammar makes the model write it; `arguments` verbatim."""
    return call_head(name, args_key) + arguments + "}"


def _json_string(quoted: str) -> str:
    """A JSON string literal's value; one the grammar would not have written (a raw newline, a bad
    escape) is taken as the text between its quotes."""
    try:
        value = json.loads(quoted)
    except ValueError:
        return quoted[1:-1]
    return value if isinstance(value, str) else quoted[1:-1]


def _call_of(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        return value["name"], arguments
    return value["name"], json.dumps(arguments, ensure_ascii=False)


class JsonCallReader:
    """Feed the text from a call object's `{` on; events come out as the call is recognized.

    `feed` returns how much of the piece belongs to the object once it has closed (None while it is
    open). A closed object that is no call (`rejected`) produced no events; its text is `text`.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.text = ""  # the object's text so far
        self.call: tuple[str, str] | None = None  # (name, arguments) once the object closed as a call
        self.rejected = False
        self._object = ValueScanner()
        self._args: ValueScanner | None = None  # set once the head is read
        self._args_done = False
        self._name = ""
        self._sent = ""  # argument text released so far

    @property
    def started(self) -> bool:
        return self._args is not None

    def feed(self, piece: str) -> tuple[list[ToolCallEvent], int | None]:
        end = self._object.feed(piece)
        used = piece if end is None else piece[:end]
        events: list[ToolCallEvent] = []
        before = len(self.text)
        self.text += used
        if self._args is None:
            head = CALL_HEAD.match(self.text)
            if head is not None and (end is None or head.end() < len(self.text)):
                self._name = _json_string(head.group(1))
                events.append(ToolCallStart(self.index, self._name))
                self._args = ValueScanner()
                self._scan_args(self.text[head.end() :], events)
        else:
            self._scan_args(self.text[before:], events)
        if end is not None:
            events += self._close()
        return events, end

    def _scan_args(self, piece: str, events: list[ToolCallEvent]) -> None:
        assert self._args is not None
        if self._args_done or not piece:
            return
        stop = self._args.feed(piece)
        if stop is not None:
            self._args_done = True
        self._release(events)

    def _release(self, events: list[ToolCallEvent]) -> None:
        assert self._args is not None
        text = self._args.text.lstrip()
        if len(text) > len(self._sent):
            events.append(ToolCallArgs(self.index, text[len(self._sent) :]))
            self._sent = text

    def _close(self) -> list[ToolCallEvent]:
        if self._args is None:  # not `{"name", "arguments"` in this order: decide on the whole
            try:
                found = _call_of(json.loads(self.text))
            except ValueError:
                found = None
            if found is None:
                self.rejected = True
                return []
            self.call = found
            return [ToolCallStart(self.index, found[0]), ToolCallArgs(self.index, found[1]), ToolCallEnd(self.index)]
        self.call = (self._name, self._sent.rstrip())
        return [ToolCallEnd(self.index)]

    def finish(self) -> list[ToolCallEvent]:
        """The text ended inside the object: a started call is closed as far as it got (a cut
        call, as OpenAI returns it with finish_reason "length"); an unstarted one is `rejected`."""
        if self._args is None:
            self.rejected = True
            return []
        self.call = (self._name, self._sent.rstrip())
        return [ToolCallEnd(self.index)]
