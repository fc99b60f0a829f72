"""The pythonic tool-call format (Llama 3.2 / Llama 4 tool prompts, vLLM's `pythonic`):

    [get_weather(city="Paris", days=3), now()]

The reply is one Python list of calls with keyword arguments written as Python literals (JSON
with True/False/None); the arguments are held to the tool's schema (pyliteral.py) in the schema's
order. Calls open the reply: in auto mode a reply is prose, or the list from its first character
(prose that opens like `[name(` is not prose). The parser reads the literals back as JSON.
"""

from __future__ import annotations

import ast
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
from sluicegate.grammars.tool_formats.lark_util import lark_str
from sluicegate.grammars.tool_formats.pyliteral import (
    GENERIC_RULES,
    ITEM_SEPARATOR,
    PyLiteralRules,
    py_literal,
)
from sluicegate.grammars.tool_formats.stream_util import BufferedParser, ValueScanner

_NAME = r"[^\s\[\](),=]+"
_LIST_START = re.compile(rf"\s*\[\s*{_NAME}\s*\(")
_LIST_START_PREFIX = re.compile(rf"\s*(\[\s*({_NAME}\s*)?)?")
_CALL_OPEN = re.compile(rf"\s*({_NAME})\s*\(")
_KWARG = re.compile(r"\s*([^\s=(),\[\]]+)\s*=")
# Llama 4 wraps the list in these (special tokens); the grammar does not write them, the parser skips them
PYTHON_START, PYTHON_END = "<|python_start|>", "<|python_end|>"
_PROSE = r"/(?s:.*)/ & ~/[ \t\r\n]*\[[ \t\r\n]*[^ \t\r\n\[\](),=]+[ \t\r\n]*\((?s:.*)/"


def pythonic_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    more = f" ({lark_str(ITEM_SEPARATOR)} call)*" if spec.parallel and not named else ""
    lines = ["%llguidance {}"]
    if spec.tool_choice == "auto":
        lines += ["start: TEXT | calls", f"TEXT: {_PROSE}"]
    else:
        lines.append("start: calls")
    # The list's "[" is written into each first call's opening lexeme ("[get_weather("): auto's
    # prose stays alive up to that "(", and llguidance's lexer does not go back to split a "[".
    lines.append(f'calls: first{more} "]"')
    lines.append("first: " + " | ".join(f'{lark_str("[" + t.name + "(")} body_{i}' for i, t in enumerate(tools)))
    lines.append("call: " + " | ".join(f'{lark_str(t.name + "(")} body_{i}' for i, t in enumerate(tools)))
    generic = False
    for i, schema in enumerate(schemas):
        rules = PyLiteralRules(f"a{i}", schema)
        kwargs = rules.kwargs(schema)
        lines.append(f'body_{i}: {kwargs} ")"' if kwargs else f'body_{i}: ")"')
        lines += rules.rules
        generic |= rules.uses_generic
    if generic:
        lines += GENERIC_RULES
    return "\n".join(lines) + "\n"


def _to_json(text: str) -> str:
    """A Python literal's text → JSON text (text that is no literal is kept as a string)."""
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = text.strip()
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # a tuple key, a set, ...: not JSON; keep the text
        return json.dumps(text.strip(), ensure_ascii=False)


class PythonicParser(BufferedParser):
    """A reply that opens with `[name(` is the call list; anything else is content. Each keyword
    argument is released as `"key": value` once its literal is complete."""

    def __init__(self) -> None:
        super().__init__()
        self._state = "start"  # start | content | calls | kwargs | value | after
        self._name = ""
        self._key = ""
        self._sent = ""
        self._value = ValueScanner()

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state in ("content", "after"):
            text = self.buffer.removeprefix(PYTHON_END) if self._state == "after" else self.buffer
            if self._state == "after" and PYTHON_END.startswith(text) and text:
                return False  # maybe Llama 4's closing tag, still arriving
            self._state = "content"
            if text:
                events.append(ContentDelta(text))
            self.buffer = ""
            return False
        if self._state == "start":
            text = self.buffer.lstrip()
            if text.startswith(PYTHON_START):
                self.buffer = text[len(PYTHON_START) :]
                return True
            if text and PYTHON_START.startswith(text):
                return False
            if _LIST_START.match(self.buffer):
                self.buffer, self._state = self.buffer[self.buffer.index("[") + 1 :], "calls"
                return True
            if _LIST_START_PREFIX.fullmatch(self.buffer):
                return False  # may still become `[name(`
            self._state = "content"
            return True
        if self._state == "value":
            return self._step_value(events)
        text = self.buffer.lstrip(" \t\r\n,")  # spacing and commas between items
        if not text:
            self.buffer = text
            return False
        if self._state == "calls":
            if text.startswith("]"):
                self.buffer, self._state = text[1:], "after"
                return True
            found = _CALL_OPEN.match(text)
            if found is None:
                self.buffer = text
                if re.fullmatch(rf"{_NAME}\s*", text):
                    return False  # the name is still arriving
                self._state = "content"
                return True
            self.index += 1
            self._name, self._sent = found.group(1), ""
            events.append(ToolCallStart(self.index, self._name))
            self.buffer, self._state = text[found.end() :], "kwargs"
            return True
        # kwargs
        if text.startswith(")"):
            self._end_call(events, "}" if self._sent else "{}")
            self.buffer, self._state = text[1:], "calls"
            return True
        found = _KWARG.match(text)
        if found is None:
            self.buffer = text
            if re.fullmatch(r"[^\s=(),\[\]]+\s*", text):
                return False
            self._end_call(events, "")  # no keyword argument here: the call ends as far as it got
            self._state = "content"
            return True
        self._key, self._value = found.group(1), ValueScanner(quotes="'\"", delimiters=",)")
        self.buffer, self._state = text[found.end() :], "value"
        return True

    def _step_value(self, events: list[ToolCallEvent]) -> bool:
        piece, self.buffer = self.buffer, ""
        end = self._value.feed(piece)
        if end is None:
            return False
        self.buffer = piece[end:]
        self._add_argument(events)
        self._state = "kwargs"
        return True

    def _add_argument(self, events: list[ToolCallEvent]) -> None:
        fragment = ("{" if not self._sent else ", ") + json.dumps(self._key, ensure_ascii=False) + ": "
        fragment += _to_json(self._value.text)
        self._sent += fragment
        events.append(ToolCallArgs(self.index, fragment))

    def _end_call(self, events: list[ToolCallEvent], closing: str) -> None:
        if closing:
            self._sent += closing
            events.append(ToolCallArgs(self.index, closing))
        events.append(ToolCallEnd(self.index))
        self.calls.append((self._name, self._sent))

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state in ("kwargs", "value"):  # cut inside a call: its arguments as far as they got
            self._end_call(events, "")
        elif self._state in ("start", "content", "after") and self.buffer:
            events.append(ContentDelta(self.buffer))


def render_call(name: str, arguments: str) -> str:
    """One call as the grammar makes the model write it (keys in the order the client sent)."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    items = args.items() if isinstance(args, dict) else []
    return name + "(" + ITEM_SEPARATOR.join(f"{k}={py_literal(v)}" for k, v in items) + ")"


_PROMPT = (
    "You are an expert in composing functions. You are given a question and a set of possible functions. "
    "Based on the question, you will need to make one or more function/tool calls to achieve the purpose. "
    "If none of the functions can be used, answer in plain text.\n"
    "If you decide to invoke any of the function(s), you MUST put it in the format of "
    "[func_name1(params_name1=params_value1, params_name2=params_value2...), func_name2(params)]\n"
    "You SHOULD NOT include any other text in the response.\n\n"
    "Here is a list of functions in JSON format that you can invoke.\n\n"
)


class PythonicFormat:
    name = "pythonic"
    call_end: str | None = None  # the calls sit inside one list

    def matches_template(self, chat_template: str) -> bool:
        return "[func_name1(" in chat_template

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return pythonic_lark(spec, schemas)

    def parser(self) -> PythonicParser:
        return PythonicParser()

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return _PROMPT + "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        if not calls:
            return content
        listed = "[" + ITEM_SEPARATOR.join(render_call(name, args) for name, args in calls) + "]"
        return content + "\n\n" + listed if content else listed

    def render_tool_results(self, results: Sequence[str]) -> str:
        return "\n".join(results)


PYTHONIC = PythonicFormat()
