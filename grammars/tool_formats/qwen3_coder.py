"""The Qwen3-Coder XML tool-call format:

    <tool_call>
    <function=get_weather>
    <parameter=city>
    Paris
    </parameter>
    <parameter=days>
    3
    </parameter>
    </function>
    </tool_call>

A string parameter is its raw text (no quotes, may span lines); other values are written as the
Qwen3-Coder template writes them: objects and arrays as JSON, booleans True/False, null None,
numbers as numbers. Parameters follow the schema's order; required ones must appear. Several calls
follow each other separated by a newline; prose may come before the first (not after the last).
The parser turns the parameters back into the arguments JSON object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.specs import ToolCalls, ToolSpec
from sluicegate.grammars.tool_formats.base import (
    ContentDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
)
from sluicegate.grammars.tool_formats.lark_util import json_rule, lark_str, regex_escape, resolve
from sluicegate.grammars.tool_formats.qwen3_values import parse_value, render_value, value_kind
from sluicegate.grammars.tool_formats.stream_util import BufferedParser, partial_marker_len

TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"
FUNCTION_CLOSE, PARAMETER_CLOSE = "</function>", "</parameter>"
CALL_SEPARATOR = "\n"
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "  # JSON values as the template's tojson writes them
_FUNCTION_OPEN = re.compile(r"\s*<function=([^>\n]*)>\n?")
_PARAMETER_OPEN = re.compile(r"\s*<parameter=([^>\n]*)>\n?")
_VALUE_END = "\n" + PARAMETER_CLOSE + "\n"
# without a grammar models also write `value</parameter>` straight before the next tag
_LOOSE_VALUE_END = re.compile(re.escape(PARAMETER_CLOSE) + r"\s*(?=<parameter=|</function>)")


def function_open(name: str) -> str:
    return f"<function={name}>\n"


def parameter_open(key: str) -> str:
    return f"<parameter={key}>\n"


def qwen3_coder_lark(spec: ToolCalls, schemas: Sequence[Any]) -> str:
    named = spec.tool_choice not in ("auto", "required")
    tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
    prefix = TOOL_CALL_OPEN + "\n"
    more = f" ({lark_str(CALL_SEPARATOR + prefix)} body)*" if spec.parallel and not named else ""
    lines = ["%llguidance {}"]
    if spec.tool_choice == "auto":  # as hermes: prose holds no <tool_call>; the first one starts the calls
        never_open = f"~/(?s:.*){regex_escape(TOOL_CALL_OPEN)}(?s:.*)/"
        lines += [f"start: PROSE | head body{more}", f"PROSE: /(?s:.*)/ & {never_open}",
                  f"head[lazy]: /(?s:.*){regex_escape(prefix)}/"]
    else:
        lines.append(f"start: {lark_str(prefix)} body{more}")
    lines.append("body: (" + " | ".join(f"call_{i}" for i in range(len(tools))) + ")"
                 + lark_str("\n" + TOOL_CALL_CLOSE))
    # a raw (string) value: any text up to the first "\n</parameter>\n", which ends it
    lines.append(f"raw[lazy]: /(?s:.*){regex_escape(chr(10) + PARAMETER_CLOSE + chr(10))}/")
    lines.append('extra: "<parameter=" /[^>\\n]+/ ">\\n" raw')
    for i, schema in enumerate(schemas):
        lines += _call_rules(i, tools[i].name, schema)
    return "\n".join(lines) + "\n"


def _call_rules(i: int, name: str, schema: Any) -> list[str]:
    """call_i: the function block; one rule per parameter, optional ones marked with '?'."""
    root = schema if isinstance(schema, dict) else {}
    properties = root.get("properties") or {}
    required = set(root.get("required") or [])
    lines: list[str] = []
    parts: list[str] = []
    for j, (key, prop) in enumerate(properties.items()):
        lines.append(f"p_{i}_{j}: {lark_str(parameter_open(key))} {_value(prop, root, f'v_{i}_{j}', lines)}")
        parts.append(f"p_{i}_{j}" + ("" if key in required else "?"))
    # closed unless the schema opens it: an explicit additionalProperties, or no "properties" at all
    extra = root["additionalProperties"] is not False if "additionalProperties" in root else "properties" not in root
    if extra or schema is True:  # an open object: any further parameters, as raw text
        parts.append("extra*")
    body = " ".join([lark_str(function_open(name)), *parts, lark_str(FUNCTION_CLOSE)])
    lines.append(f"call_{i}: {body}")
    return lines


def _value(prop: Any, root: dict[str, Any], rule: str, lines: list[str]) -> str:
    """The grammar of one parameter's value followed by its close; extra rules go to `lines`."""
    close = lark_str("\n" + PARAMETER_CLOSE + "\n")
    prop = resolve(prop, root)
    kind = value_kind(prop, root)
    if kind == "raw":
        return "raw"
    if kind == "enum":
        options = sorted({render_value(v) for v in prop.get("enum", [prop.get("const")])})
        lines.append(f"{rule}: " + " | ".join(lark_str(o) for o in options))
    elif kind == "boolean":
        lines.append(f'{rule}: "True" | "False" | "true" | "false"')
    elif kind == "null":
        lines.append(f'{rule}: "None" | "null"')
    else:  # JSON text held to the schema ($defs of the root come along for its $refs)
        defs = {k: root[k] for k in ("$defs", "definitions") if k in root}
        leaf = {**prop, **defs} if isinstance(prop, dict) else prop
        lines.append(f"{rule}: {json_rule(leaf, ITEM_SEPARATOR, KEY_SEPARATOR)}")
    return f"{rule} {close}"


class Qwen3CoderParser(BufferedParser):
    """Content until <tool_call>; then the function block, one parameter at a time: each finished
    parameter's `"key": value` is released as an argument fragment."""

    def __init__(self, tools: Sequence[ToolSpec] = ()) -> None:
        super().__init__()
        self._schemas = {t.name: _schema(t) for t in tools}
        self._state = "content"  # content | function | params | value | close
        self._name = ""
        self._key = ""
        self._sent = ""  # the arguments JSON text released so far
        self._after_call = False  # a call just closed: a newline next separates calls, no content

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state == "content":
            if self._after_call:
                self.buffer, self._after_call = self.buffer.removeprefix(CALL_SEPARATOR), False
            if self._content_until(events, [TOOL_CALL_OPEN]) is None:
                return False
            self._state = "function"
            return True
        if self._state == "value":
            return self._step_value(events)
        text = self.buffer.lstrip()
        if not text:
            return False
        if self._state == "function":
            found = _FUNCTION_OPEN.match(self.buffer)
            if found is None or found.end() == len(self.buffer) and not self.buffer.endswith("\n"):
                if found is None and not _maybe(text, "<function="):
                    events.append(ContentDelta(TOOL_CALL_OPEN))  # no function block: prose after all
                    self._state = "content"
                    return True
                return False
            self.index += 1
            self._name, self._sent = found.group(1).strip(), ""
            events.append(ToolCallStart(self.index, self._name))
            self.buffer, self._state = self.buffer[found.end() :], "params"
            return True
        if self._state == "params":
            found = _PARAMETER_OPEN.match(self.buffer)
            if found is not None and (found.end() < len(self.buffer) or self.buffer.endswith("\n")):
                self._key = found.group(1).strip()
                self.buffer, self._state = self.buffer[found.end() :], "value"
                return True
            if text.startswith(FUNCTION_CLOSE):
                self._end_call(events)
                self.buffer, self._state = text[len(FUNCTION_CLOSE) :], "close"
                return True
            if _maybe(text, "<parameter=") or _maybe(text, FUNCTION_CLOSE):
                return False
            self._end_call(events)  # something else inside the call: end it here
            self._state = "content"
            return True
        # close: the call's </tool_call>, then content again
        if text.startswith(TOOL_CALL_CLOSE):
            self.buffer, self._after_call = text[len(TOOL_CALL_CLOSE) :], True
        elif partial_marker_len(text, [TOOL_CALL_CLOSE]) == len(text):
            return False
        self._state = "content"
        return True

    def _step_value(self, events: list[ToolCallEvent]) -> bool:
        """A value ends at "\n</parameter>\n", as the grammar writes it (the text may hold a bare
        </parameter>), or at </parameter> right before the next tag, as models write it unguided."""
        at = self.buffer.find(_VALUE_END)
        loose = _LOOSE_VALUE_END.search(self.buffer)
        if loose is not None and (at < 0 or loose.start() < at):  # the first end there is
            raw, rest = self.buffer[: loose.start()].removesuffix("\n"), self.buffer[loose.end() :]
        elif at >= 0:
            raw, rest = self.buffer[:at], self.buffer[at + len(_VALUE_END) :]
        else:
            return False
        self._add_parameter(events, raw)
        self.buffer, self._state = rest, "params"
        return True

    def _add_parameter(self, events: list[ToolCallEvent], raw: str) -> None:
        root = self._schemas.get(self._name, {})
        value = parse_value(raw, (root.get("properties") or {}).get(self._key), root)
        fragment = ("{" if not self._sent else ITEM_SEPARATOR) + json.dumps(self._key, ensure_ascii=False)
        fragment += KEY_SEPARATOR + json.dumps(value, ensure_ascii=False)
        self._sent += fragment
        events.append(ToolCallArgs(self.index, fragment))

    def _end_call(self, events: list[ToolCallEvent]) -> None:
        fragment = "}" if self._sent else "{}"
        self._sent += fragment
        events += [ToolCallArgs(self.index, fragment), ToolCallEnd(self.index)]
        self.calls.append((self._name, self._sent))

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state in ("params", "value"):  # cut: the arguments as far as they got, unclosed
            events.append(ToolCallEnd(self.index))
            self.calls.append((self._name, self._sent))
        elif self._state == "content" and self.buffer:
            events.append(ContentDelta(self.buffer))
        elif self._state == "function":
            events.append(ContentDelta(TOOL_CALL_OPEN + self.buffer))


def _maybe(text: str, marker: str) -> bool:
    """Whether `text` may still grow into something that starts with `marker`."""
    return marker.startswith(text) or text.startswith(marker)


def _schema(tool: ToolSpec) -> dict[str, Any]:
    try:
        schema = json.loads(tool.parameters_json)
    except ValueError:
        return {}
    return schema if isinstance(schema, dict) else {}


def render_call(name: str, arguments: str) -> str:
    """One call as the grammar makes the model write it (and as Qwen3-Coder's template does)."""
    try:
        args = json.loads(arguments)
    except ValueError:
        args = {}
    params = "".join(parameter_open(k) + render_value(v) + "\n" + PARAMETER_CLOSE + "\n"
                     for k, v in (args.items() if isinstance(args, dict) else []))
    return TOOL_CALL_OPEN + "\n" + function_open(name) + params + FUNCTION_CLOSE + "\n" + TOOL_CALL_CLOSE


_PROMPT_HEAD = "# Tools\n\nYou have access to the following functions:\n\n<tools>"
_PROMPT_TAIL = (
    "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n</IMPORTANT>"
)


def tools_system_prompt(tools: Sequence[dict[str, Any]]) -> str:
    """The tools as Qwen3-Coder's template lists them: one <function> block each."""
    blocks = []
    for tool in tools:
        fn = tool.get("function", tool)
        params = (fn.get("parameters") or {}).get("properties") or {}
        lines = ["<function>", f"<name>{fn.get('name', '')}</name>"]
        if fn.get("description"):
            lines.append(f"<description>{fn['description'].strip()}</description>")
        lines.append("<parameters>")
        for key, prop in params.items():
            lines += ["<parameter>", f"<name>{key}</name>"]
            if isinstance(prop, dict):
                if "type" in prop:
                    lines.append(f"<type>{prop['type']}</type>")
                if prop.get("description"):
                    lines.append(f"<description>{str(prop['description']).strip()}</description>")
            lines.append("</parameter>")
        required = (fn.get("parameters") or {}).get("required")
        if required:
            lines.append(f"<required>{json.dumps(required, ensure_ascii=False)}</required>")
        lines += ["</parameters>", "</function>"]
        blocks.append("\n".join(lines))
    return _PROMPT_HEAD + "".join("\n" + b for b in blocks) + _PROMPT_TAIL


class Qwen3CoderFormat:
    name = "qwen3_coder"
    call_end: str | None = TOOL_CALL_CLOSE

    def matches_template(self, chat_template: str) -> bool:
        return "<function=" in chat_template and "<parameter=" in chat_template

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        return qwen3_coder_lark(spec, schemas)

    def parser(self, tools: Sequence[ToolSpec] = ()) -> Qwen3CoderParser:
        """`tools` (optional) lets raw parameter text be read by its schema: "12345" for a string
        parameter stays a string; without them the text is read by what it looks like."""
        return Qwen3CoderParser(tools)

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        return tools_system_prompt(tools)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        parts = [content] if content else []
        parts.extend(render_call(name, args) for name, args in calls)
        return CALL_SEPARATOR.join(parts)

    def render_tool_results(self, results: Sequence[str]) -> str:
        return "\n".join(f"<tool_response>\n{r}\n</tool_response>" for r in results)


QWEN3_CODER = Qwen3CoderFormat()
