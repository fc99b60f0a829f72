"""The ToolFormat interface: everything the gateway needs to know about one tool-call syntax.

A format says how tools reach the prompt when the chat template does not render them, which grammar
holds the model to its call syntax for each tool_choice, how output text turns back into OpenAI
tool-call events while it streams, and how earlier calls and tool results are written back. The
gateway only talks to this interface; it never knows which format it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sluicegate.grammars.specs import ToolCalls


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


class ToolCallParser(Protocol):
    """Feed text deltas, get content deltas and tool-call events in order; `calls` holds the
    (name, arguments JSON text) of every finished call."""

    calls: list[tuple[str, str]]

    def feed(self, delta: str) -> list[ToolCallEvent]: ...

    def finish(self) -> list[ToolCallEvent]:
        """End of output: flush what is held back (a cut call is closed as far as it got)."""
        ...


class ToolFormat(Protocol):
    name: str
    # The text that ends one call, after which the answer may stop or go on with another call
    # (hermes: "</tool_call>"); None where the calls sit inside one list that must be closed.
    # The engine ends an answer there when the remaining budget cannot fit another call.
    call_end: str | None

    def matches_template(self, chat_template: str) -> bool:
        """Whether a chat template (jinja source) writes calls in this format."""
        ...

    def lark(self, spec: ToolCalls, schemas: Sequence[Any]) -> str:
        """The llguidance lark grammar for `spec` (tool_choice is never 'none'); `schemas` are the
        argument schemas of the tools the grammar may call, in order, already closed."""
        ...

    def parser(self) -> ToolCallParser: ...

    def tools_system_prompt(self, tools: Sequence[dict[str, Any]]) -> str:
        """The tool block for the system turn of a template that does not render `tools`."""
        ...

    def render_assistant_content(self, content: str, calls: Sequence[tuple[str, str]]) -> str:
        """An earlier assistant turn's text and calls, written as the grammar made the model write them."""
        ...

    def render_tool_results(self, results: Sequence[str]) -> str:
        """Consecutive tool results, as the text of one user turn."""
        ...


def parse_all(parser: ToolCallParser, text: str) -> tuple[str, list[tuple[str, str]]]:
    """Whole model output → (content text, [(tool name, arguments JSON text)])."""
    events = parser.feed(text) + parser.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    if parser.calls:
        content = content.rstrip()
    return content, parser.calls
