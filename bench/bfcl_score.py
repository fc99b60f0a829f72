"""BFCL questions as OpenAI requests, and the AST check of an answer's calls against the ground truth.

The check follows the Berkeley Function Calling Leaderboard's AST checker in its essentials: the
calls' count matches the ground truth, each call names the expected function (any order for
parallel calls), every argument given is an expected parameter with one of the allowed values,
and every parameter the ground truth requires is there. Strings compare after BFCL's
standardisation (case, spaces and `,./-_*^` ignored); an int stands for an equal float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": None}
_STRIP = re.compile(r"[ ,./\-_*^]")


def openai_name(name: str) -> str:
    """OpenAI tool names allow [a-zA-Z0-9_-]: BFCL's dotted names become underscored."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)


def to_json_schema(node: Any) -> Any:
    """BFCL's parameter schema (types dict / float / tuple / any) → JSON Schema."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            mapped = _TYPES.get(value, value) if isinstance(value, str) else value
            if mapped is not None:
                out["type"] = mapped
        elif key == "properties" and isinstance(value, dict):
            out["properties"] = {k: to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        elif key in ("required", "enum", "description", "minimum", "maximum", "format"):
            out[key] = value
    if "required" in out and "properties" in out:
        out["required"] = [r for r in out["required"] if r in out["properties"]]
    return out


def tools_of(question: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {
        "name": openai_name(f["name"]), "description": f.get("description", ""),
        "parameters": to_json_schema(f.get("parameters") or {"type": "object", "properties": {}})}}
        for f in question["function"]]


def messages_of(question: dict[str, Any]) -> list[dict[str, Any]]:
    return list(question["question"][0])


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return _STRIP.sub("", value.lower())
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def _call_matches(name: str, args: dict[str, Any], expected_name: str, expected: dict[str, list[Any]]) -> bool:
    return name == openai_name(expected_name) and _dict_matches(args, expected)


def _dict_matches(value: dict[str, Any], expected: dict[str, list[Any]]) -> bool:
    """Every key given is expected with an allowed value; every key required ("" not allowed) is given."""
    for key, item in value.items():
        if key not in expected or not any(_value_matches(item, a) for a in expected[key]):
            return False
    return all(key in value for key, allowed in expected.items() if "" not in allowed)


def _value_matches(value: Any, allowed: Any) -> bool:
    if isinstance(allowed, dict) and isinstance(value, dict):  # a nested object: allowed values per key
        return _dict_matches(value, {k: v if isinstance(v, list) else [v] for k, v in allowed.items()})
    return bool(_norm(value) == _norm(allowed))


def ast_correct(calls: Sequence[tuple[str, dict[str, Any]]], ground_truth: Sequence[dict[str, Any]]) -> bool:
    """Whether the answer's (name, arguments) calls match the ground truth (any order)."""
    if len(calls) != len(ground_truth):
        return False
    left = list(calls)
    for truth in ground_truth:
        [(expected_name, expected)] = truth.items()
        hit = next((i for i, (n, a) in enumerate(left) if _call_matches(n, a, expected_name, expected)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True


def parse_arguments(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
