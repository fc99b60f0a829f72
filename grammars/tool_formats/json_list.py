"""Formats whose calls are one JSON list after a special token:

    mistral      [TOOL_CALLS][{"name": "f", "arguments": {...}}, ...]
    phi4_mini    <|tool_call|>[{"name": "f", "arguments": {...}}, ...]<|/tool_call|>
    granite      <|tool_call|>[{"name": "f", "arguments": {...}}, ...]

The opening token is a special token, so it never occurs in prose: auto mode is free text that may
end in the call list, and the parser switches to calls exactly at that token. Each family's file
(mistral.py, phi4_mini.py, granite.py) supplies its tokens, tool prompt and result layout.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
from sluicegate.grammars.tool_formats.stream_util import BufferedParser, partial_marker_len

ITEM_SEPARATOR = ", "  # JSON layout: json.dumps' default, what these families' templates write
KEY_SEPARATOR = ": "


def json_list_lark(spec: ToolCalls, schemas: Sequence[Any], open_token: str, close_token: str | None) -> str:
    """required: the list only; a named tool: a list of one call of it; auto: prose, then
    optionally the list (the open token ends the prose: a special token is never prose)."""
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    close = f" {special(close_token)}" if close_token else ""
    more = f' ({lark_str(ITEM_SEPARATOR)} call)*' if spec.parallel and not named else ""
    block = f'{special(open_token)} "[" call{more} "]"{close}'
    lines = ["%llguidance {}"]
    if spec.tool_choice == "auto":
        lines += [f"start: TEXT? ({block})?", f"TEXT: {prose_without([open_token])}"]
    else:
        lines.append(f"start: {block}")
    lines.append("call: " + " | ".join(f"call_{i}" for i in range(len(tools))))
    lines += json_call_rules([call_head(t.name) for t in tools], schemas, ITEM_SEPARATOR, KEY_SEPARATOR)
    return "\n".join(lines) + "\n"


class JsonListParser(BufferedParser):
    """Content until the open marker, then the list's call objects, then content again."""

    def __init__(self, open_marker: str, close_marker: str | None) -> None:
        super().__init__()
        self._open = open_marker
        self._close = close_marker
        self._state = "content"  # content | list_start | in_list | call | after_list
        self._reader: JsonCallReader | None = None
        self._bare = False  # the marker was followed by one object, not a list

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state == "content":
            if self._content_until(events, [self._open]) is None:
                return False
            self._state = "list_start"
            return True
        if self._state == "call":
            return self._step_call(events)
        text = self.buffer.lstrip()
        if not text:
            return False
        first = text[0]
        if self._state == "list_start" and first in "[{":
            self._bare = first == "{"
            self.buffer = text[1:] if first == "[" else text
            self._state = "in_list" if first == "[" else "call"
            if self._bare:
                self._start_call()
            return True
        if self._state == "in_list" and first in ",{":
            self.buffer = text[1:] if first == "," else text
            if first == "{":
                self._start_call()
            return True
        if self._state == "in_list" and first == "]":
            self.buffer, self._state = text[1:], "after_list"
            return True
        if self._state == "after_list" and self._close:
            if text.startswith(self._close):
                self.buffer, self._state = text[len(self._close) :], "content"
                return True
            if partial_marker_len(text, [self._close]) == len(text):
                return False  # maybe the close marker, still arriving
        self._state = "content"  # anything else is prose again
        return True

    def _start_call(self) -> None:
        self.index += 1
        self._reader = JsonCallReader(self.index)
        self._state = "call"

    def _step_call(self, events: list[ToolCallEvent]) -> bool:
        assert self._reader is not None
        piece, self.buffer = self.buffer, ""
        found, end = self._reader.feed(piece)
        events += found
        if end is None:
            return False
        self.buffer = piece[end:]
        self._end_call(events)
        self._state = "after_list" if self._bare else "in_list"
        return True

    def _end_call(self, events: list[ToolCallEvent]) -> None:
        assert self._reader is not None
        if self._reader.rejected:  # an object that is no call: keep its text as content
            self.index -= 1
            events.append(ContentDelta(self._reader.text))
        elif self._reader.call is not None:
            self.calls.append(self._reader.call)
        self._reader = None

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state == "call" and self._reader is not None:
            events += self._reader.finish()
            self._end_call(events)
        elif self._state == "content" and self.buffer:
            events.append(ContentDelta(self.buffer))


@dataclass  # not frozen: ToolFormat declares `name` a plain (settable) attribute
class JsonListFormat:
    """A ToolFormat for one family's special-token JSON list."""

    name: str
    open_token: str
    close_token: str | None
    markers: tuple[str, ...]  # the template holds all of these …
    excludes: tuple[str, ...]  # … and none of these
    prompt: Callable[[Sequence[dict[str, Any]]], str]
    results: Callable[[Sequence[str]], str]
    call_end: str | None = None  # calls sit inside one list: no text ends a single call
    call_id_length: int | None = None  # the only length of call id the family's templates accept

    def matches_template(self, chat_template: str) -> bool:
        return all(m in chat_template for m in self.markers) and not any(x in chat_template for x in self.excludes)

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return json_list_lark(spec, schemas, self.open_token, self.close_token)

    def parser(self) -> JsonListParser:
        return JsonListParser(self.open_token, self.close_token)

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return self.prompt(tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        if not calls:
            return content
        listed = "[" + ITEM_SEPARATOR.join(call_object(name, args) for name, args in calls) + "]"
        return content + self.open_token + listed + (self.close_token or "")

    def render_tool_results(self, results: Sequence[str]) -> str:
        return self.results(results)
