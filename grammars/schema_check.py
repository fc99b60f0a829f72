"""Checks a JSON schema before any backend sees it.

`validate_schema` rejects what is not a JSON schema at all (jsonschema's metaschema for the draft
the schema declares, 2020-12 when it declares none). `outlines_unsupported` pre-scans for what
outlines-core 0.2.x would silently ignore or translate wrongly, so the outlines backend can refuse
it by name instead of compiling a mask that lets invalid output through.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema

try:
    import jsonschema_rs
except ImportError:  # optional speed-up; the pure-Python check gives the same verdicts
    jsonschema_rs = None  # type: ignore[assignment]

from sluicegate.grammars.backend import GrammarError

# Keywords that only annotate: they constrain nothing, so ignoring them is exact.
ANNOTATIONS = frozenset(
    {
        "title", "description", "examples", "default", "$schema", "$id", "id", "$comment",
        "deprecated", "readOnly", "writeOnly", "contentEncoding", "contentMediaType", "$anchor",
    }
)

# What outlines-core turns into a regex exactly (or more strictly, which is still safe).
_OUTLINES_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
        "minLength", "maxLength", "enum", "const", "anyOf", "$ref", "$defs", "definitions", "format",
    }
)
# Formats whose outlines regex is at least as strict as the format itself.
_OUTLINES_FORMATS = frozenset({"uuid"})  # date-time/time: offset optional; date: allows 02-30
# Why the rest is refused (measured on outlines-core 0.2.14).
_OUTLINES_REASONS = {
    "pattern": "its regex is spliced into the JSON string unescaped, so it can emit a raw '\"'",
    "allOf": "it concatenates the sub-schemas' regexes instead of intersecting them",
    "oneOf": "it is compiled as anyOf, so exclusivity is not enforced",
    "minimum": "numeric bounds are silently ignored",
    "maximum": "numeric bounds are silently ignored",
    "exclusiveMinimum": "numeric bounds are silently ignored",
    "exclusiveMaximum": "numeric bounds are silently ignored",
    "multipleOf": "multipleOf is silently ignored",
    "uniqueItems": "uniqueItems is silently ignored",
    "minProperties": "property counts are silently ignored",
    "maxProperties": "property counts are silently ignored",
}


def validate_schema(schema: Any) -> None:
    """Raise GrammarError unless `schema` is a valid JSON schema under its declared draft."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise GrammarError(f"a JSON schema must be an object or a boolean, not {type(schema).__name__}")
    if jsonschema_rs is not None:  # ~20 µs against ~4 ms for the pure-Python metaschema check
        try:
            jsonschema_rs.meta.validate(schema)
            return
        except jsonschema_rs.ValidationError as exc:
            where = "/".join(str(p) for p in exc.instance_path) or "(root)"
            message = str(exc).splitlines()[0]
            raise GrammarError(f"invalid JSON schema at {where}: {message}") from None
        except Exception:  # e.g. a $schema draft it does not know: let jsonschema decide
            pass
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "(root)"
        raise GrammarError(f"invalid JSON schema at {where}: {exc.message}") from None


def _subschemas(node: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """(path-ish label, sub-schema) for every place a keyword holds schemas."""
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        for name, sub in (node.get(key) or {}).items():
            yield f"{key}/{name}", sub
    for key in ("additionalProperties", "items", "not", "if", "then", "else", "contains"):
        sub = node.get(key)
        if isinstance(sub, dict | bool):
            yield key, sub
        elif isinstance(sub, list):
            yield from ((f"{key}/{i}", s) for i, s in enumerate(sub))
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for i, sub in enumerate(node.get(key) or []):
            yield f"{key}/{i}", sub


def _outlines_node_problem(node: dict[str, Any]) -> str | None:
    constraining = [k for k in node if k not in ANNOTATIONS]
    if not constraining:
        return "an empty sub-schema ({}) compiles to a broken regex"
    for key in constraining:
        if key in _OUTLINES_REASONS:
            return f"'{key}': {_OUTLINES_REASONS[key]}"
        if key not in _OUTLINES_KEYWORDS:
            return f"'{key}' is not supported"
    if "format" in node and node["format"] not in _OUTLINES_FORMATS:
        return f"'format': {node['format']!r} is not enforced exactly"
    if isinstance(node.get("items"), list):
        return "'items' as a list (tuple validation) is not supported"
    missing = [r for r in node.get("required", []) if r not in (node.get("properties") or {})]
    if missing:
        return f"'required': {missing} are not in 'properties', so they would not be generated"
    if node.get("additionalProperties") not in (None, False, True) and "properties" not in node:
        return "'additionalProperties' with a schema is not enforced"
    return None


def outlines_unsupported(schema: Any, path: str = "#") -> str | None:
    """First reason outlines-core cannot enforce `schema` exactly, or None when it can."""
    if schema is True:
        return f"{path}: the schema 'true' compiles to a broken regex"
    if schema is False:
        return f"{path}: the schema 'false' is not supported"
    problem = _outlines_node_problem(schema)
    if problem:
        return f"{path}: {problem}"
    for label, sub in _subschemas(schema):
        if label == "additionalProperties" and isinstance(sub, bool):
            continue
        found = outlines_unsupported(sub, f"{path}/{label}")
        if found:
            return found
    return None
