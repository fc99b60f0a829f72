"""Qwen3-Coder parameter values: which grammar a parameter's schema gets, how a JSON value is
written as parameter text (as the Qwen3-Coder template writes it), and how that text is read back.

A string is written raw, so its text alone cannot say "string" or "number": the parser reads it
by the parameter's schema when it has the tools, and otherwise by what the text looks like.
"""

from __future__ import annotations

import json
from typing import Any

from sluicegate.grammars.tool_formats.lark_util import resolve

_WORDS = {"True": True, "true": True, "False": False, "false": False, "None": None, "null": None}


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {kind}
    if isinstance(kind, list):
        return {k for k in kind if isinstance(k, str)}
    return set()


def value_kind(prop: Any, root: dict[str, Any]) -> str:
    """raw (a string, or anything that may be one), enum, boolean, null, or json."""
    prop = resolve(prop, root)
    if not isinstance(prop, dict) or prop == {}:
        return "raw"
    if "enum" in prop or "const" in prop:
        return "enum"
    if "anyOf" in prop or "oneOf" in prop or not _types(prop):
        return "raw"  # a union or an untyped schema: the text is read by what it looks like
    types = _types(prop)
    if "string" in types:
        return "raw"
    if types == {"boolean"}:
        return "boolean"
    if types == {"null"}:
        return "null"
    return "json"


def render_value(value: Any) -> str:
    """A JSON value as parameter text: strings raw, objects/arrays as JSON, True/False/None."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return repr(value)
    return json.dumps(value, ensure_ascii=False)


def parse_value(text: str, prop: Any = None, root: dict[str, Any] | None = None) -> Any:
    """Parameter text → its JSON value, by the parameter's schema where known."""
    prop = resolve(prop, root or {}) if prop is not None else None
    types = _types(prop) if isinstance(prop, dict) else set()
    if types == {"string"} or (isinstance(prop, dict) and _all_strings(prop.get("enum"))):
        return text
    word = text.strip()
    if word in _WORDS and (not types or types & {"boolean", "null"}):
        return _WORDS[word]
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return text if isinstance(value, str) else value


def _all_strings(values: Any) -> bool:
    return isinstance(values, list) and bool(values) and all(isinstance(v, str) for v in values)

