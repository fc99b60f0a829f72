"""Small helpers every format's grammar uses: lark string literals, regex escapes, %json rules."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sluicegate.grammars.vocab import lark_special_name


def lark_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def json_rule(schema: Any, item_separator: str, key_separator: str) -> str:
    """%json held to `schema` in a fixed layout; x-guidance sits at the schema's top level."""
    layout = {"item_separator": item_separator, "key_separator": key_separator, "whitespace_flexible": False}
    if isinstance(schema, bool):
        schema = {} if schema else {"not": {}}
    return "%json " + json.dumps({**schema, "x-guidance": layout}, ensure_ascii=False)


def regex_escape(text: str) -> str:
    """Escape for a lark /regex/ (the rust regex syntax, plus the '/' delimiter)."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\\n")
        elif ch in r"\.+*?()|[]{}^$#&-~/":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def special(token: str) -> str:
    """A special token in a lark rule: matched as that one token, never as its text."""
    return lark_special_name(token)


def prose_without(markers: Sequence[str], body: str = "/(?s:.*)/") -> str:
    """A terminal for auto mode's prose: `body`, holding none of `markers` as text. A special token
    never matches text, but the parser reads text, where the token and its spelling look alike:
    so the prose may not spell a marker either."""
    return " & ".join([body, *(f"~/(?s:.*){regex_escape(m)}(?s:.*)/" for m in markers)])


def resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow a local "$ref" (#/$defs/X, #/definitions/X) one hop at a time; others stay."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 16:
        ref: str = schema["$ref"]
        node: Any = root
        for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else ["\0"]:
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return schema
        schema, seen = node, seen + 1
    return schema


def json_call_rules(heads: Sequence[str], schemas: Sequence[Any], item_separator: str,
                    key_separator: str) -> list[str]:
    """Rules call_i for formats whose call is one JSON object with the arguments last
    ({"name": "f", "arguments": {...}}): the call's fixed head text, its arguments held to
    schemas[i], then the object's closing brace."""
    lines = []
    for i, (head, schema) in enumerate(zip(heads, schemas, strict=True)):
        lines.append(f'call_{i}: {lark_str(head)} args_{i} "}}"')
        lines.append(f"args_{i}: {json_rule(schema, item_separator, key_separator)}")
    return lines
