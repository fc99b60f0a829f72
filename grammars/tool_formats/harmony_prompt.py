"""Tools as harmony declares them: a TypeScript `namespace functions` (gpt-oss's developer message).

    // Get the weather
    type get_weather = (_: {
    // The city
    city: string,
    days?: number, // default: 1
    }) => any;
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

_SCALARS = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}


def ts_type(schema: Any) -> str:
    """A JSON schema as a TypeScript type (what gpt-oss was shown; approximate for rich schemas)."""
    if not isinstance(schema, dict):
        return "any"
    if "enum" in schema:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"]) or "never"
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(ts_type(s) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(ts_type({**schema, "type": k}) for k in kind)
    if kind == "array":
        return f"{ts_type(schema.get('items'))}[]"
    if kind == "object":
        if not schema.get("properties"):
            return "object"
        required = set(schema.get("required") or [])
        fields = ", ".join(f"{k}{'' if k in required else '?'}: {ts_type(v)}" for k, v in schema["properties"].items())
        return "{ " + fields + " }"
    return _SCALARS.get(kind, "any") if isinstance(kind, str) else "any"


def _function(fn: dict[str, Any]) -> list[str]:
    lines = [f"// {fn['description']}"] if fn.get("description") else []
    params = fn.get("parameters") or {}
    properties = params.get("properties") or {}
    if not properties:
        return [*lines, f"type {fn['name']} = () => any;"]
    required = set(params.get("required") or [])
    lines.append(f"type {fn['name']} = (_: {{")
    for key, prop in properties.items():
        if isinstance(prop, dict) and prop.get("description"):
            lines.append(f"// {prop['description']}")
        default = f" // default: {json.dumps(prop['default'])}" if isinstance(prop, dict) and "default" in prop else ""
        lines.append(f"{key}{'' if key in required else '?'}: {ts_type(prop)},{default}")
    return [*lines, "}) => any;"]


def tools_namespace(tools: Sequence[dict[str, Any]]) -> str:
    body: list[str] = []
    for tool in tools:
        body += [*_function(tool.get("function", tool)), ""]
    return "# Tools\n\n## functions\n\nnamespace functions {\n\n" + "\n".join(body) + "\n} // namespace functions"
