"""Do not start a tool call that cannot finish: the token budget an answer needs for one more call.

With parallel calls allowed, a model may keep opening calls (a small one repeats the same call)
until max_tokens cuts the last one in half, and the agent gets a call whose arguments do not parse.
The rule: once a call is complete, the answer may go on with another call only while the tokens
left cover the shortest valid call of some callable tool (its required keys with their shortest
values, in the format's own layout, tokenized) and the longest call the answer already holds
(models repeat the calls they just wrote); otherwise it ends there, after its last complete call.
A call longer than both can still be cut: its finish_reason is `length`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluicegate.grammars.schema_close import close_objects
from sluicegate.grammars.specs import ToolCalls
from sluicegate.grammars.tool_formats import get_format

_MAX_DEPTH = 16  # $ref chains and nesting deeper than this count as `null` (a lower bound anyway)


@dataclass(frozen=True)
class CallBudget:
    call_end: str  # the text that ends one call in this format
    min_call_tokens: int  # tokens of the shortest call any tool allows, its separator included

    def call_end_at(self, text: str) -> int | None:
        """Where the call that `text` ends with ends (an id for that call end), or None."""
        tail = text[-(len(self.call_end) + 16):]  # the tail only: this runs at every token
        stripped = tail.rstrip()
        return len(text) - (len(tail) - len(stripped)) if stripped.endswith(self.call_end) else None


@dataclass
class CallTracker:
    """Per answer: where its last call ended and how long its longest call was, in tokens."""

    budget: CallBudget
    last_end_text: int = -1  # call_end_at of the last call end seen
    last_end_tokens: int = 0  # output tokens at that call end
    longest: int = 0  # tokens of the longest complete call so far (its separator included)

    def ends_answer(self, text: str, num_output_tokens: int, tokens_left: int) -> bool:
        """At a call end, whether the answer ends here: another call would not fit in tokens_left,
        judged by the shortest valid call and by the longest call the answer already holds (models
        tend to repeat the calls they just wrote)."""
        end = self.budget.call_end_at(text)
        if end is None:
            return False
        if end != self.last_end_text:
            self.longest = max(self.longest, num_output_tokens - self.last_end_tokens)
            self.last_end_text, self.last_end_tokens = end, num_output_tokens
        return tokens_left < max(self.budget.min_call_tokens, self.longest)


def call_budget(spec: ToolCalls, encode: Callable[[str], Sequence[int]]) -> CallBudget | None:
    """The budget rule for `spec`, or None where it cannot apply (one call at most, or a format whose
    calls sit in one list)."""
    fmt = get_format(spec.format)
    if fmt.call_end is None or not spec.parallel or spec.tool_choice not in ("auto", "required") or not spec.tools:
        return None
    shortest = min(
        len(encode(fmt.render_assistant_content("", [(tool.name, json.dumps(_shortest_args(tool.parameters_json),
                                                                              ensure_ascii=False))])))
        for tool in spec.tools)
    return CallBudget(fmt.call_end, shortest + 1)  # + the separator between two calls


def _shortest_args(parameters_json: str) -> Any:
    schema = close_objects(json.loads(parameters_json))
    return shortest_instance(schema, schema)


def shortest_instance(schema: Any, root: Any, depth: int = 0) -> Any:
    """A short valid value of `schema` (shortest for the keywords that shape length; patterns and
    formats are not solved, so it is a lower bound there)."""
    if depth > _MAX_DEPTH or not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return shortest_instance(_resolve(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return min(schema["enum"], key=_size)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return min((shortest_instance(s, root, depth + 1) for s in schema[key]), key=_size)
    if isinstance(schema.get("allOf"), list):
        merged = dict(schema)
        for part in merged.pop("allOf"):
            if isinstance(part, dict):
                merged = _merge(merged, part)
        return shortest_instance(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        return min((shortest_instance({**schema, "type": k}, root, depth + 1) for k in kind), key=_size)
    if kind is None:
        kind = "object" if "properties" in schema or "required" in schema else "null"
    return _shortest_of_type(kind, schema, root, depth)


def _shortest_of_type(kind: str, schema: dict[str, Any], root: Any, depth: int) -> Any:
    if kind == "string":
        return "a" * int(schema.get("minLength", 0))
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
        if low is not None and low > 0:
            return int(low) + 1 if kind == "integer" else low
        if high is not None and high < 0:
            return int(high) - 1 if kind == "integer" else high
        return 0
    if kind == "boolean":
        return True
    if kind == "array":
        items = schema.get("items", {})
        return [shortest_instance(items, root, depth + 1) for _ in range(int(schema.get("minItems", 0)))]
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: shortest_instance(properties.get(key, {}), root, depth + 1) for key in schema.get("required", [])}
    return None


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = {**a, **b}
    out["properties"] = {**a.get("properties", {}), **b.get("properties", {})}
    out["required"] = list(dict.fromkeys([*a.get("required", []), *b.get("required", [])]))
    return out


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    return node
