"""gpt-oss's harmony format. After the prompt's `<|start|>assistant` the model writes messages:

    <|channel|>analysis<|message|>reasoning<|end|><|start|>assistant
    <|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>

or, answering in prose, `<|channel|>final<|message|>text` (then <|return|>, gpt-oss's EOS). All
`<|...|>` markers are special tokens. A call ends with <|call|>, where gpt-oss stops: the client
runs the tool and the model goes on from its result. The grammar lets another call message follow
(`<|start|>assistant<|channel|>commentary to=...`) for engines that do not stop there.

Content is the final channel and commentary preambles; the analysis channel is reasoning, which is
not returned (sluicegate's responses have no reasoning field yet). Tools reach the model as a
TypeScript `namespace functions` in the developer message (harmony_prompt.py).
"""

from __future__ import annotations

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
from sluicegate.grammars.tool_formats.harmony_prompt import tools_namespace
from sluicegate.grammars.tool_formats.lark_util import json_rule, lark_str, prose_without, special
from sluicegate.grammars.tool_formats.stream_util import (
    BufferedParser,
    ValueScanner,
    find_marker,
    partial_marker_len,
)

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
CONSTRAIN, CALL, RETURN = "<|constrain|>", "<|call|>", "<|return|>"
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "  # as the chat template's tojson writes the arguments
_BODY_ENDS = (END, CALL, RETURN)
_RECIPIENT = re.compile(r"to=functions\.([^\s<]+)")
_CHANNEL = re.compile(re.escape(CHANNEL) + r"\s*(\w+)")


def _may_be_header(text: str) -> bool:
    """Whether text is (or may still become) a message header: `<|channel|>…`, `<|start|>…`, or a
    recipient before the channel (` to=functions.x<|channel|>…`)."""
    text = text.lstrip()
    return any(text.startswith(m) or m.startswith(text) for m in ("<|", "to="))


def call_header(name: str) -> str:
    """The text after <|channel|> of a call message, up to <|constrain|>."""
    return f"commentary to=functions.{name} "


def harmony_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    next_message = f'{special(END)} {special(START)} "assistant"'
    more = f' ({special(START)} "assistant" call)*' if spec.parallel and not named else ""
    lines = ["%llguidance {}"]
    if spec.tool_choice == "auto":
        lines.append("start: (analysis? (final | preamble? calls))?")
    else:
        lines.append("start: analysis? calls")
    lines += [
        f'analysis: {special(CHANNEL)} "analysis" {special(MESSAGE)} TEXT {next_message}',
        f'preamble: {special(CHANNEL)} "commentary" {special(MESSAGE)} TEXT {next_message}',
        f'final: {special(CHANNEL)} "final" {special(MESSAGE)} TEXT',
        # a message's text ends at its marker (a special token, never text); nor may it spell one
        f"TEXT: {prose_without([START, END, MESSAGE, CHANNEL, CALL, RETURN])}",
        f"calls: call{more}",
        f"call: {special(CHANNEL)} (" + " | ".join(f"call_{i}" for i in range(len(tools))) + f") {special(CALL)}",
    ]
    for i, schema in enumerate(schemas):
        lines.append(f'call_{i}: {lark_str(call_header(tools[i].name))} {special(CONSTRAIN)} "json" '
                     f"{special(MESSAGE)} args_{i}")
        lines.append(f"args_{i}: {json_rule(schema, ITEM_SEPARATOR, KEY_SEPARATOR)}")
    return "\n".join(lines) + "\n"


class HarmonyParser(BufferedParser):
    """Message by message: a header up to <|message|> says what the body is (a call to
    functions.NAME, final/commentary text = content, analysis = reasoning, dropped); the body runs
    to <|end|>, <|call|> or <|return|>, or to the end of the output."""

    def __init__(self) -> None:
        super().__init__()
        self._state = "header"  # header | body | plain
        self._kind = ""  # call | content | reasoning | rest (after a call's arguments)
        self._name = ""
        self._sent = ""
        self._args = ValueScanner()  # a call's body is its arguments object: it ends where they do

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state == "plain":  # output that is no harmony message: all content
            events.append(ContentDelta(self.buffer))
            self.buffer = ""
            return False
        if self._state == "body":
            return self._step_body(events)
        if not _may_be_header(self.buffer):
            self._state = "plain"
            return True
        at = self.buffer.find(MESSAGE)
        if at < 0:
            return False  # a header still arriving
        header, self.buffer = self.buffer[:at], self.buffer[at + len(MESSAGE) :]
        self._open(header, events)
        return True

    def _open(self, header: str, events: list[ToolCallEvent]) -> None:
        recipient = _RECIPIENT.search(header)
        channel = _CHANNEL.search(header)
        self._state = "body"
        if recipient is not None:
            self._kind, self._name, self._sent, self._args = "call", recipient.group(1), "", ValueScanner()
            self.index += 1
            events.append(ToolCallStart(self.index, recipient.group(1)))
        else:
            self._kind = "reasoning" if channel is not None and channel.group(1) == "analysis" else "content"

    def _step_body(self, events: list[ToolCallEvent]) -> bool:
        if self._kind == "call":  # marker text inside a JSON string is no marker: scan the JSON
            piece, self.buffer = self.buffer, ""
            end = self._args.feed(piece)
            self._release(piece if end is None else piece[:end], events)
            if end is None:
                return False
            self.buffer = piece[end:]
            self._close(events)
            self._state, self._kind = "body", "rest"  # what follows up to the end marker is dropped
            return True
        found = find_marker(self.buffer, _BODY_ENDS)
        end = found[0] if found is not None else len(self.buffer) - partial_marker_len(self.buffer, _BODY_ENDS)
        self._release(self.buffer[:end], events)
        if found is None:
            self.buffer = self.buffer[end:]
            return False
        self.buffer = self.buffer[found[0] + len(found[1]) :]
        self._close(events)
        return True

    def _release(self, text: str, events: list[ToolCallEvent]) -> None:
        if not text:
            return
        if self._kind == "call":
            if not self._sent:
                text = text.lstrip()
            if text:
                self._sent += text
                events.append(ToolCallArgs(self.index, text))
        elif self._kind == "content":
            events.append(ContentDelta(text))

    def _close(self, events: list[ToolCallEvent]) -> None:
        if self._kind == "call":
            events.append(ToolCallEnd(self.index))
            self.calls.append((self._name, self._sent.rstrip()))
        self._state, self._kind = "header", ""

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state == "body":
            self._release(self.buffer, events)
            self._close(events)
        elif self._state == "plain" and self.buffer:
            events.append(ContentDelta(self.buffer))
        # a header cut short (max_tokens) is dropped: it would have been markers, not content


def render_call(name: str, arguments: str) -> str:
    """One call message as the grammar makes the model write it (after <|start|>assistant)."""
    return CHANNEL + call_header(name) + CONSTRAIN + "json" + MESSAGE + arguments + CALL


class HarmonyFormat:
    name = "harmony"
    call_end: str | None = CALL

    def matches_template(self, chat_template: str) -> bool:
        return CHANNEL in chat_template and MESSAGE in chat_template

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return harmony_lark(spec, schemas)

    def parser(self) -> HarmonyParser:
        return HarmonyParser()

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return tools_namespace(tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        """Prose before calls is a commentary preamble; prose alone is the final answer."""
        if not calls:
            return CHANNEL + "final" + MESSAGE + content
        preamble = CHANNEL + "commentary" + MESSAGE + content + END + START + "assistant" if content else ""
        return preamble + (START + "assistant").join(render_call(name, args) for name, args in calls)

    def render_tool_results(self, results: Sequence[str]) -> str:
        # harmony names the tool in the result's header; the interface hands over results only
        return "".join(START + "functions to=assistant" + CHANNEL + "commentary" + MESSAGE + r + END
                       for r in results)


HARMONY = HarmonyFormat()
