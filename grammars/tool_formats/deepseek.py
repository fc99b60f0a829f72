"""DeepSeek's tool calls, a block of calls between special tokens (<｜…｜> use fullwidth bars):

    deepseek_v3    (V3, R1) each call names its type and fences its arguments; calls on new lines
        <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather
        ```json
        {"city": "Paris"}
        ```<｜tool▁call▁end｜><｜tool▁calls▁end｜>
    deepseek_v31   (V3.1 on) name, separator, arguments
        <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>

Results go back between <｜tool▁output▁begin｜> and <｜tool▁output▁end｜>. The parser takes either
layout whichever the format (models mix them up across versions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sluicegate.grammars.specs import ToolCalls
from sluicegate.grammars.tool_formats.base import (
    ContentDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallEvent,
    ToolCallStart,
)
from sluicegate.grammars.tool_formats.lark_util import json_rule, lark_str, prose_without, special
from sluicegate.grammars.tool_formats.stream_util import BufferedParser, ValueScanner, partial_marker_len

CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"
CALL_BEGIN, CALL_END, SEP = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"
OUTPUTS_BEGIN, OUTPUTS_END = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>"
OUTPUT_BEGIN, OUTPUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"
FENCE_OPEN, FENCE_CLOSE = "\n```json\n", "\n```"
ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "


@dataclass  # not frozen: ToolFormat declares `name` a plain (settable) attribute
class DeepSeekFormat:
    name: str
    fenced: bool  # V3's `function<sep>name` + ```json fence, or V3.1's `name<sep>arguments`
    call_end: str | None = None  # calls sit inside one block; the answer ends after its close

    def call_text(self, name: str, arguments: str) -> str:
        if self.fenced:
            return CALL_BEGIN + "function" + SEP + name + FENCE_OPEN + arguments + FENCE_CLOSE + CALL_END
        return CALL_BEGIN + name + SEP + arguments + CALL_END

    @property
    def separator(self) -> str:
        return "\n" if self.fenced else ""  # between two calls, as each version's template writes

    def matches_template(self, chat_template: str) -> bool:
        return CALLS_BEGIN in chat_template and (("```json" in chat_template) == self.fenced)

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        named = spec.tool_choice not in ("auto", "required")
        tools = [t for t in spec.tools if not named or t.name == spec.tool_choice]
        sep = f"{lark_str(self.separator)} " if self.separator else ""
        more = f" ({sep}call)*" if spec.parallel and not named else ""
        block = f"{special(CALLS_BEGIN)} call{more} {special(CALLS_END)}"
        lines = ["%llguidance {}"]
        if spec.tool_choice == "auto":
            lines += [f"start: TEXT? ({block})?", f"TEXT: {prose_without([CALLS_BEGIN, CALL_BEGIN])}"]
        else:
            lines.append(f"start: {block}")
        lines.append(f"call: {special(CALL_BEGIN)} (" + " | ".join(f"call_{i}" for i in range(len(tools)))
                     + f") {special(CALL_END)}")
        for i, schema in enumerate(schemas):
            name = tools[i].name
            if self.fenced:
                head = f'"function" {special(SEP)} {lark_str(name + FENCE_OPEN)}'
                lines.append(f"call_{i}: {head} args_{i} {lark_str(FENCE_CLOSE)}")
            else:
                lines.append(f"call_{i}: {lark_str(name)} {special(SEP)} args_{i}")
            lines.append(f"args_{i}: {json_rule(schema, ITEM_SEPARATOR, KEY_SEPARATOR)}")
        return "\n".join(lines) + "\n"

    def parser(self) -> DeepSeekParser:
        return DeepSeekParser()

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        lines = ["## Tools", "", "You have access to the following tools:"]
        for tool in tools:
            fn = tool.get("function", tool)
            lines += ["", f"### {fn['name']}", f"Description: {fn.get('description', '')}", "",
                      f"Parameters: {json.dumps(fn.get('parameters') or {}, ensure_ascii=False)}"]
        example = self.call_text("tool_call_name", "tool_call_arguments")
        lines += ["", "IMPORTANT: ALWAYS adhere to this exact format for tool use:",
                  CALLS_BEGIN + example + "{{additional_tool_calls}}" + CALLS_END]
        return "\n".join(lines)

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        if not calls:
            return content
        written = self.separator.join(self.call_text(name, args) for name, args in calls)
        return content + CALLS_BEGIN + written + CALLS_END

    def render_tool_results(self, results: Sequence[str]) -> str:
        outputs = "\n".join(OUTPUT_BEGIN + r + OUTPUT_END for r in results)
        return OUTPUTS_BEGIN + outputs + OUTPUTS_END if self.fenced else outputs


class DeepSeekParser(BufferedParser):
    """Content until the calls block (or a bare call); each call's head up to its arguments; the
    arguments object streamed; then the rest of the call up to its end token."""

    def __init__(self) -> None:
        super().__init__()
        self._state = "content"  # content | block | head | args | tail
        self._args = ValueScanner()
        self._name = ""
        self._sent = ""

    def _step(self, events: list[ToolCallEvent]) -> bool:
        if self._state == "content":
            marker = self._content_until(events, [CALLS_BEGIN, CALL_BEGIN])
            if marker is None:
                return False
            self._state = "block" if marker == CALLS_BEGIN else "head"
            return True
        if self._state == "args":
            return self._step_args(events)
        text = self.buffer.lstrip()
        if self._state == "block":  # between calls: the next call or the block's end
            for marker, state in ((CALL_BEGIN, "head"), (CALLS_END, "content")):
                if text.startswith(marker):
                    self.buffer, self._state = text[len(marker) :], state
                    return True
            if partial_marker_len(text, [CALL_BEGIN, CALLS_END]) == len(text):
                return False
            self._state = "content"
            return True
        if self._state == "tail":  # after the arguments: the fence's close, then the call's end
            at = self.buffer.find(CALL_END)
            if at < 0:
                return False
            self.buffer, self._state = self.buffer[at + len(CALL_END) :], "block"
            return True
        return self._step_head(events)

    def _step_head(self, events: list[ToolCallEvent]) -> bool:
        at = self.buffer.find(SEP)
        brace = self.buffer.find("{", at + len(SEP)) if at >= 0 else -1
        if at < 0 or brace < 0:
            return False
        before, after = self.buffer[:at].strip(), self.buffer[at + len(SEP) : brace]
        # V3: `function<sep>name\n```json\n{`; V3.1: `name<sep>{`
        name = after.split("\n", 1)[0].strip() if after.strip() else before
        self.index += 1
        self._name, self._sent, self._args = name, "", ValueScanner()
        events.append(ToolCallStart(self.index, name))
        self.buffer, self._state = self.buffer[brace:], "args"
        return True

    def _step_args(self, events: list[ToolCallEvent]) -> bool:
        piece, self.buffer = self.buffer, ""
        end = self._args.feed(piece)
        text = self._args.text.lstrip()
        if len(text) > len(self._sent):
            events.append(ToolCallArgs(self.index, text[len(self._sent) :]))
            self._sent = text
        if end is None:
            return False
        self.buffer = piece[end:]
        self._end_call(events)
        self._state = "tail"
        return True

    def _end_call(self, events: list[ToolCallEvent]) -> None:
        events.append(ToolCallEnd(self.index))
        self.calls.append((self._name, self._sent.rstrip()))

    def _finish(self, events: list[ToolCallEvent]) -> None:
        if self._state == "args":  # cut inside the arguments: closed as far as they got
            self._end_call(events)
        elif self._state == "content" and self.buffer:
            events.append(ContentDelta(self.buffer))


DEEPSEEK_V3 = DeepSeekFormat("deepseek_v3", fenced=True)
DEEPSEEK_V31 = DeepSeekFormat("deepseek_v31", fenced=False)
