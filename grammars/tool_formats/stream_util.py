"""Pieces the streaming parsers share: holding back a marker that may still be arriving, and
scanners that find where a JSON or Python literal value ends while its text streams in.

A parser sees the model's text in arbitrary pieces (one character at a time in the tests), so every
decision here is made on what has arrived and deferred when the next piece could change it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluicegate.grammars.tool_formats.base import ContentDelta, ToolCallEvent

_OPENERS = {"{": "}", "[": "]", "(": ")"}


def partial_marker_len(text: str, markers: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `markers`: text
    that must wait, since the next piece may complete the marker."""
    longest = 0
    for marker in markers:
        for n in range(min(len(text), len(marker) - 1), longest, -1):
            if marker.startswith(text[-n:]):
                longest = n
                break
    return longest


def find_marker(text: str, markers: Sequence[str]) -> tuple[int, str] | None:
    """The first of `markers` in `text` (position, marker); None if none occurs."""
    best: tuple[int, str] | None = None
    for marker in markers:
        at = text.find(marker)
        if at >= 0 and (best is None or at < best[0]):
            best = (at, marker)
    return best


class ValueScanner:
    """Finds the end of one JSON value (or Python literal, with quotes="'\\"") fed in pieces.

    Brackets are counted outside strings; a value that opens with a bracket ends where its bracket
    closes, a bare value (number, true, None) where a delimiter at depth 0 follows. `feed` returns
    the offset in the piece just after the value's end, or None while the value goes on.
    """

    def __init__(self, quotes: str = '"', delimiters: str = ",)]}\n") -> None:
        self._quotes = quotes
        self._delimiters = delimiters
        self._stack: list[str] = []
        self._quote: str | None = None  # the open string's quote character
        self._escape = False
        self._started = False  # a non-space character of the value has been seen
        self.text = ""  # the value's text so far (leading whitespace included)

    def feed(self, piece: str) -> int | None:
        for offset, ch in enumerate(piece):
            if self._quote is not None:
                self.text += ch
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == self._quote:
                    self._quote = None
                    if not self._stack:
                        return offset + 1
                continue
            if not self._stack and self._started and (ch in self._delimiters or ch.isspace()):
                return offset  # a bare value ends before its delimiter
            self.text += ch
            if ch.isspace() and not self._started:
                continue
            self._started = True
            if ch in self._quotes:
                self._quote = ch
            elif ch in _OPENERS:
                self._stack.append(_OPENERS[ch])
            elif self._stack and ch == self._stack[-1]:
                self._stack.pop()
                if not self._stack:
                    return offset + 1
        return None


class BufferedParser:
    """The frame of a streaming parser: text accumulates in `buffer`; the subclass's `_step` eats
    what it can decide, appends events and returns whether it progressed (then it is run again)."""

    def __init__(self) -> None:
        self.buffer = ""
        self.index = -1  # index of the current / last call
        self.calls: list[tuple[str, str]] = []  # (name, arguments JSON text) of finished calls

    def feed(self, delta: str) -> list[ToolCallEvent]:
        self.buffer += delta
        events: list[ToolCallEvent] = []
        while self.buffer and self._step(events):
            pass
        return events

    def finish(self) -> list[ToolCallEvent]:
        events: list[ToolCallEvent] = []
        self._finish(events)
        self.buffer = ""
        return events

    def _step(self, events: list[ToolCallEvent]) -> bool:
        raise NotImplementedError

    def _finish(self, events: list[ToolCallEvent]) -> None:
        raise NotImplementedError

    def _content_until(self, events: list[ToolCallEvent], markers: Sequence[str]) -> str | None:
        """Release content up to the first marker and consume it (returned); without one, release
        all but a possible marker start and return None."""
        found = find_marker(self.buffer, markers)
        if found is None:
            keep = partial_marker_len(self.buffer, markers)
            text = self.buffer[: len(self.buffer) - keep]
            if text:
                events.append(ContentDelta(text))
            self.buffer = self.buffer[len(text) :]
            return None
        at, marker = found
        if at:
            events.append(ContentDelta(self.buffer[:at]))
        self.buffer = self.buffer[at + len(marker) :]
        return marker
