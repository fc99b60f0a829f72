"""What a request can ask to be constrained to. Plain frozen values, hashable for the cache."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class JsonSchema:
    # The schema serialized so the spec is hashable. Key order is kept, not sorted: llguidance
    # generates properties in the order the schema lists them, and that order is the user's.
    schema_json: str

    @staticmethod
    def of(schema: dict | bool) -> JsonSchema:
        return JsonSchema(json.dumps(schema, ensure_ascii=False))

    @property
    def schema(self) -> dict | bool:
        return json.loads(self.schema_json)


@dataclass(frozen=True)
class JsonObject:
    """Any JSON object (OpenAI's response_format json_object)."""


@dataclass(frozen=True)
class Regex:
    pattern: str


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Lark:
    """A context-free grammar in llguidance's Lark syntax (vLLM's guided_grammar)."""

    grammar: str


@dataclass(frozen=True)
class ToolSpec:
    name: str
    parameters_json: str  # JSON schema of the arguments, serialized in its own key order
    description: str = ""

    @staticmethod
    def of(name: str, parameters: dict | None, description: str = "") -> ToolSpec:
        # no parameters = a function of no arguments: only {} may be passed
        params = parameters if parameters else {"type": "object", "properties": {}, "additionalProperties": False}
        return ToolSpec(name, json.dumps(params, ensure_ascii=False), description)


ToolChoice = Literal["none", "auto", "required"] | str  # any other string: that tool's name


@dataclass(frozen=True)
class ToolCalls:
    """Tool calls in the chat format's syntax (hermes: <tool_call>{"name", "arguments"}</tool_call>)."""

    tools: tuple[ToolSpec, ...]
    tool_choice: ToolChoice = "auto"
    parallel: bool = True
    format: str = "hermes"


GrammarSpec = JsonSchema | JsonObject | Regex | Choice | Lark | ToolCalls
