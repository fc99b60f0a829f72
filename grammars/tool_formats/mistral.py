"""Mistral's two tool-call layouts, both opened by the special token [TOOL_CALLS]:

    mistral        [TOOL_CALLS][{"name": "f", "arguments": {...}}, {"name": "g", ...}]
                   (Mistral 7B v0.3, Nemo, Small 3.0/3.1: templates without [ARGS])
    mistral_args   [TOOL_CALLS]f[ARGS]{...}[TOOL_CALLS]g[ARGS]{...}
                   (the newer templates that write [ARGS]: Mistral Small 3.2, Magistral, Devstral)

Tools reach the model as [AVAILABLE_TOOLS][...][/AVAILABLE_TOOLS] and results come back in
[TOOL_RESULTS]...[/TOOL_RESULTS], as the families' templates write them. [TOOL_CALLS], [ARGS],
[AVAILABLE_TOOLS] and [TOOL_RESULTS] are special tokens of Mistral's tokenizers (lark names them
<TOOL_CALLS>, <ARGS>: grammars/vocab.py).
"""

from __future__ import annotations

import json
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
from sluicegate.grammars.tool_formats.json_list import JsonListFormat
from sluicegate.grammars.tool_formats.lark_util import json_rule, lark_str, prose_without, special
from sluicegate.grammars.tool_formats.stream_util import BufferedParser, ValueScanner

TOOL_CALLS = "[TOOL_CALLS]"
ARGS = "[ARGS]"
CALL_ID_LENGTH = 9  # Mistral's templates raise on any call id but 9 letters/digits
CALL_ID = "[CALL_ID]"  # newer Mistral templates put the call's id between the name and [ARGS]
AVAILABLE_TOOLS, AVAILABLE_TOOLS_END = "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"
TOOL_RESULTS, TOOL_RESULTS_END = "[TOOL_RESULTS]", "[/TOOL_RESULTS]"
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    # the block Mistral's templates put before the last user message, here in the system turn
    return AVAILABLE_TOOLS + json.dumps(list(tools), ensure_ascii=False) + AVAILABLE_TOOLS_END


def render_json_results(results: Sequence[str]) -> str:
    """Nemo's layout: each result as {"content": ...} (the content as JSON when it is JSON)."""
    return "".join(TOOL_RESULTS + json.dumps({"content": _json_or_text(r)}, ensure_ascii=False) + TOOL_RESULTS_END
                   for r in results)


def render_plain_results(results: Sequence[str]) -> str:
    return "".join(TOOL_RESULTS + r + TOOL_RESULTS_END for r in results)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


MISTRAL = JsonListFormat(
    name="mistral", open_token=TOOL_CALLS, close_token=None, markers=(TOOL_CALLS,), excludes=(ARGS,),
    prompt=tools_system_prompt, results=render_json_results, call_id_length=CALL_ID_LENGTH)


def mistral_args_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    """Each call is [TOOL_CALLS]name[ARGS]{arguments}; parallel calls simply follow each other."""
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    lines = ["%llguidance {}"]
    if spec.tool_choice == "auto":
        lines += ["start: TEXT? calls?", f"TEXT: {prose_without([TOOL_CALLS])}"]
    else:
        lines.append("start: calls")
    lines.append("calls: call+" if spec.parallel and not named else "calls: call")
    lines.append(f"call: {special(TOOL_CALLS)} (" + " | ".join(f"call_{i}" for i in range(len(tools))) + ")")
    for i, schema in enumerate(schemas):
        lines.append(f"call_{i}: {lark_str(tools[i].name)} {special(ARGS)} args_{i}")
        lines.append(f"args_{i}: {json_rule(schema, ITEM_SEPARATOR, KEY_SEPARATOR)}")
    return "\n".join(lines) + "\n"


class MistralArgsParser(BufferedParser):
    """Content until [TOOL_CALLS]; the name until [ARGS]; then the arguments object, streamed."""

    def __init__(self) -> None:
        super().__init__()
        self._state = "content"  # content | name | args
        self._name = ""
        self._args = ValueScanner()
        self._sent = ""  # argument text released so far

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state == "content":
            if self._content_until(events, [TOOL_CALLS]) is None:
                return False
            self._state = "name"
            return True
        if self._state == "name":
            at = self.buffer.find(ARGS)
            head = self.buffer[:at] if at >= 0 else self.buffer
            if not all(ch in _NAME_CHARS or ch in ARGS + CALL_ID for ch in head):
                self._state = "content"  # [TOOL_CALLS] and no name: prose after all
                return True
            if at < 0:
                return False  # the name (or [ARGS]) is still arriving
            self.index += 1
            self._name = self.buffer[:at].split(CALL_ID)[0].strip()  # newer: name[CALL_ID]id[ARGS]
            events.append(ToolCallStart(self.index, self._name))
            self._args, self._sent = ValueScanner(), ""
            self.buffer, self._state = self.buffer[at + len(ARGS) :], "args"
            return True
        piece, self.buffer = self.buffer, ""
        end = self._args.feed(piece)
        self._release(events)
        if end is None:
            return False
        self.buffer = piece[end:]
        self._end_call(events)
        return True

    def _release(self, events: list[ToolCallEvent]) -> None:
        text = self._args.text.lstrip()
        if len(text) > len(self._sent):
            events.append(ToolCallArgs(self.index, text[len(self._sent) :]))
            self._sent = text

    def _end_call(self, events: list[ToolCallEvent]) -> None:
        events.append(ToolCallEnd(self.index))
        self.calls.append((self._name, self._sent.rstrip()))
        self._state = "content"

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state == "args":  # cut inside the arguments: closed as far as they got
            self._end_call(events)
        elif self._state == "content" and self.buffer:
            events.append(ContentDelta(self.buffer))
        elif self._state == "name" and self.buffer:
            events.append(ContentDelta(self.buffer))


class MistralArgsFormat:
    name = "mistral_args"
    call_end: str | None = None  # a call ends with its arguments object: no closing text
    call_id_length = CALL_ID_LENGTH

    def matches_template(self, chat_template: str) -> bool:
        return TOOL_CALLS in chat_template and ARGS in chat_template

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return mistral_args_lark(spec, schemas)

    def parser(self) -> MistralArgsParser:
        return MistralArgsParser()

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return tools_system_prompt(tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        return content + "".join(TOOL_CALLS + name + ARGS + args for name, args in calls)

    def render_tool_results(self, results: Sequence[str]) -> str:
        return render_plain_results(results)


MISTRAL_ARGS = MistralArgsFormat()
