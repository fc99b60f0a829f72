"""Python literals held to a JSON schema, as lark rules (the pythonic format's arguments).

A Python literal is JSON with True/False/None for true/false/null (strings in double quotes with
JSON's escapes are valid Python). So a schema whose values can never be true/false/null (strings,
numbers, objects of those, ...) is handed to llguidance's %json, which enforces every keyword;
only the parts that may hold a boolean or null are written here: True/False/None, and the objects,
arrays and unions around them. Layout is fixed: ", " between items, ": " after keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.backend import GrammarError
from sluicegate.grammars.tool_formats.lark_util import json_rule, lark_str, resolve

ITEM_SEPARATOR, KEY_SEPARATOR = ", ", ": "
_MAX_DEPTH = 24  # deeper means a recursive schema ($ref to itself): refused, not unrolled forever

# Any Python literal (an untyped or open part of a schema)
GENERIC_RULES = [
    'py_value: PY_STRING | PY_NUMBER | "True" | "False" | "None" | py_list | py_dict',
    'py_list: "[" (py_value (", " py_value)*)? "]"',
    'py_dict: "{" (PY_STRING ": " py_value (", " PY_STRING ": " py_value)*)? "}"',
    r'PY_STRING: /"(\\([\"\\bfnrt]|u[a-fA-F0-9]{4})|[^\"\\\x00-\x1F\x7F])*"/',
    r"PY_NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/",
]


def py_literal(value: Any) -> str:
    """A JSON value written as the grammar writes it."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "[" + ITEM_SEPARATOR.join(py_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (py_literal(str(k)) + KEY_SEPARATOR + py_literal(v) for k, v in value.items())
        return "{" + ITEM_SEPARATOR.join(items) + "}"
    return json.dumps(value, ensure_ascii=False)


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    return [kind] if isinstance(kind, str) else [k for k in kind if isinstance(k, str)] if isinstance(kind, list) else []


def _has_words(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, list):
        return any(_has_words(v) for v in value)
    if isinstance(value, dict):
        return any(_has_words(v) for v in value.values())
    return False


def sequence_rule(items: Sequence[tuple[str, bool]], separator: str) -> str | None:
    """Items in order, each required or optional, `separator` between those present; None when
    nothing is declared. (Optional items make the first one present special: no separator before.)"""
    def rest(i: int) -> str:
        return " ".join(f"{lark_str(separator)} {rule}" if req else f"({lark_str(separator)} {rule})?"
                        for rule, req in items[i:])

    def first(i: int) -> str | None:  # a non-empty run starting at item i or later
        if i == len(items):
            return None
        rule, required = items[i]
        own = f"{rule} {rest(i + 1)}".strip()
        later = None if required else first(i + 1)
        return f"({own} | {later})" if later else f"({own})"

    body = first(0)
    if body is None:
        return None
    return body + "?" if all(not req for _, req in items) else body


class PyLiteralRules:
    """Collects the rules for one tool's arguments; `prefix` keeps rule names apart."""

    def __init__(self, prefix: str, root: Any) -> None:
        self.prefix = prefix
        self.root = root if isinstance(root, dict) else {}
        self.rules: list[str] = []
        self.uses_generic = False
        self._count = 0

    def _rule(self, body: str) -> str:
        name = f"{self.prefix}_{self._count}"
        self._count += 1
        self.rules.append(f"{name}: {body}")
        return name

    def _generic(self) -> str:
        self.uses_generic = True
        return "py_value"

    def may_hold_words(self, schema: Any, depth: int = 0) -> bool:
        """Whether a value of `schema` may contain true, false or null anywhere."""
        schema = resolve(schema, self.root)
        if depth > _MAX_DEPTH:
            raise GrammarError("the pythonic tool format cannot hold a recursive argument schema", "tools")
        if not isinstance(schema, dict):
            return schema is not False
        if "const" in schema or "enum" in schema:
            return _has_words(schema.get("const")) if "const" in schema else _has_words(schema["enum"])
        branches = [b for key in ("anyOf", "oneOf", "allOf") for b in schema.get(key, [])]
        if branches:
            return any(self.may_hold_words(b, depth + 1) for b in branches)
        types = _types(schema)
        if not types or {"boolean", "null"} & set(types):
            return True
        if "object" in types:
            extra = schema.get("additionalProperties", True)
            parts = [*(schema.get("properties") or {}).values(), extra]
            if any(self.may_hold_words(p, depth + 1) for p in parts if p is not False):
                return True
        if "array" in types:
            return any(self.may_hold_words(p, depth + 1) for p in [schema.get("items", True),
                                                                   *schema.get("prefixItems", [])])
        return False

    def value(self, schema: Any, depth: int = 0) -> str:
        """A lark expression for one value of `schema`."""
        if depth > _MAX_DEPTH:
            raise GrammarError("the pythonic tool format cannot hold a recursive argument schema", "tools")
        schema = resolve(schema, self.root)
        if schema is False:
            raise GrammarError("an argument schema of `false` admits no value", "tools")
        if not isinstance(schema, dict) or not schema:
            return self._generic()
        if not self.may_hold_words(schema, depth):  # llguidance enforces it all, as JSON = Python here
            defs = {k: self.root[k] for k in ("$defs", "definitions") if k in self.root}
            return self._rule(json_rule({**schema, **defs}, ITEM_SEPARATOR, KEY_SEPARATOR))
        if "const" in schema:
            return self._rule(lark_str(py_literal(schema["const"])))
        if "enum" in schema:
            return self._rule(" | ".join(lark_str(py_literal(v)) for v in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if key in schema:  # the branches as alternatives (sibling keywords are not merged in)
                return self._rule(" | ".join(self.value(b, depth + 1) for b in schema[key]))
        if "allOf" in schema:
            raise GrammarError("the pythonic tool format cannot hold allOf with booleans or nulls", "tools")
        types = _types(schema)
        if not types:
            return self._generic()
        return self._rule(" | ".join(self._typed(schema, t, depth) for t in types))

    def _typed(self, schema: dict[str, Any], kind: str, depth: int) -> str:
        if kind == "boolean":
            return '"True" | "False"'
        if kind == "null":
            return '"None"'
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        return self.value({k: v for k, v in schema.items() if k not in ("type",)} | {"type": kind}, depth + 1)

    def _object(self, schema: dict[str, Any], depth: int) -> str:
        properties = schema.get("properties")
        if not properties:  # a free-form object
            return self._generic() if schema.get("additionalProperties", True) is not False else '"{}"'
        required = set(schema.get("required") or [])
        items = [(self._rule(f"{lark_str(py_literal(key) + KEY_SEPARATOR)} {self.value(prop, depth + 1)}"),
                  key in required) for key, prop in properties.items()]
        body = sequence_rule(items, ITEM_SEPARATOR)  # declared keys only: objects are closed
        return f'"{{" {body} "}}"'

    def _array(self, schema: dict[str, Any], depth: int) -> str:
        if schema.get("prefixItems"):
            raise GrammarError("the pythonic tool format cannot hold prefixItems with booleans or nulls", "tools")
        item = self.value(schema.get("items", True), depth + 1)
        low, high = int(schema.get("minItems", 0)), schema.get("maxItems")
        if high is not None and int(high) <= 0:
            return '"[]"'
        more = f"{{{max(low - 1, 0)},{'' if high is None else int(high) - 1}}}"
        run = f"{item} ({lark_str(ITEM_SEPARATOR)} {item}){more}"
        return f'"[" {run} "]"' if low >= 1 else f'"[" ({run})? "]"'

    def kwargs(self, schema: Any) -> str | None:
        """The keyword arguments of a call (`a=1, b="x"`), in the schema's order; None for none.
        An open schema (no "properties", or an explicit additionalProperties) also takes further
        `name=value` arguments after the declared ones."""
        schema = resolve(schema, self.root)
        if not isinstance(schema, dict):
            schema = {} if schema is True else {"properties": {}}
        properties = schema.get("properties") or {}
        required = set(schema.get("required") or [])
        items = [(self._rule(f"{lark_str(key + '=')} {self.value(prop, 1)}"), key in required)
                 for key, prop in properties.items()]
        declared = sequence_rule(items, ITEM_SEPARATOR)
        extra = schema.get("additionalProperties", "properties" not in schema)
        if extra is False:
            return declared
        other = self._rule(r'/[A-Za-z_][A-Za-z0-9_]*/ "=" ' + self.value(extra if isinstance(extra, dict) else True, 1))
        more = f"({lark_str(ITEM_SEPARATOR)} {other})*"
        if declared is None:
            return f"({other} {more})?"
        if declared.endswith("?"):  # every declared one optional: the first present may be either kind
            return f"({declared[:-1]} {more} | {other} {more})?"
        return f"{declared} {more}"
