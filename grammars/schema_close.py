"""Close a tool's argument objects: `additionalProperties: false` where the schema does not say.

JSON Schema leaves objects open, so a grammar built from `{"type": "object", "properties": {}}`
lets a small model invent arguments (`{"unknown_argument": ...}`) that make the agent's
`tool(**args)` raise. A tool call carries the declared parameters only, unless the tool's author
wrote `additionalProperties` explicitly (kept as written).

Only objects that declare `properties` are closed (an object schema without them says nothing
about its keys), and never a branch of `allOf` (its properties may come from a sibling branch)
or a node with `patternProperties` (its extra keys are declared there).
"""

from __future__ import annotations

from typing import Any

# Keywords whose value is one subschema / a list of subschemas / a map of name -> subschema.
_ONE = ("items", "additionalItems", "contains", "not", "if", "then", "else", "additionalProperties",
        "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_MANY = ("anyOf", "oneOf", "prefixItems")
_MAP = ("properties", "$defs", "definitions", "dependentSchemas")


def close_objects(schema: Any) -> Any:
    """A copy of `schema` with every object that declares `properties` closed (see module doc)."""
    return _close(schema, closable=True)


def _close(node: Any, closable: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for key in _ONE:
        if isinstance(out.get(key), dict):
            out[key] = _close(out[key], closable=True)
    for key in _MANY:
        if isinstance(out.get(key), list):
            out[key] = [_close(s, closable=True) for s in out[key]]
    if isinstance(out.get("allOf"), list):
        out["allOf"] = [_close(s, closable=False) for s in out["allOf"]]
    for key in _MAP:
        if isinstance(out.get(key), dict):
            out[key] = {name: _close(s, closable=True) for name, s in out[key].items()}
    if (closable and isinstance(out.get("properties"), dict) and "additionalProperties" not in out
            and "patternProperties" not in out and "allOf" not in out and "unevaluatedProperties" not in out):
        out["additionalProperties"] = False
    return out
