"""Hosted MCP tools as the model sees them: `server__tool` names, inputSchema as function parameters,
and MCP tool results as the text fed back to the model. Pure functions, no SDK import."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

SEPARATOR = "__"
_MAX_NAME = 64  # OpenAI's (and the gateway's) limit on a function name
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_.\-]")


@dataclass(frozen=True)
class HostedTool:
    """One tool of one hosted server, under the name the model calls it by."""

    name: str  # "server__tool", a valid function name
    server: str  # the server's label in the config
    tool: str  # the tool's own name on its server (what tools/call is sent)
    description: str
    parameters_json: str  # the tool's inputSchema, as the function's parameters

    @property
    def parameters(self) -> dict[str, Any]:
        parameters: dict[str, Any] = json.loads(self.parameters_json)
        return parameters

    def function_tool(self) -> dict[str, Any]:
        """As an OpenAI function tool (what the chat template and the tool grammar get)."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


def qualified_name(server: str, tool: str, taken: set[str]) -> str:
    """`server__tool`, with characters a function name cannot hold replaced, cut to 64 characters
    (with a short hash to keep it unique) and made unique among `taken`."""
    name = server + SEPARATOR + _NOT_NAME_CHAR.sub("_", tool)
    if len(name) > _MAX_NAME or name in taken:
        digest = hashlib.sha1(tool.encode()).hexdigest()[:8]
        name = name[: _MAX_NAME - 9] + "_" + digest
    return name


def input_parameters(schema: Any) -> dict[str, Any]:
    """An MCP inputSchema as function parameters: an object schema without the `$schema` marker
    (grammar backends read the schema itself, not which draft it claims), closed to undeclared
    arguments unless it says otherwise (else the grammar lets a model invent keys forever)."""
    if not isinstance(schema, dict):
        return {"type": "object", "properties": {}, "additionalProperties": False}
    params = {k: v for k, v in schema.items() if k != "$schema"}
    params.setdefault("type", "object")
    if "properties" in params:
        params.setdefault("additionalProperties", False)
    return params


def hosted_tools(server: str, listed: Iterable[Any]) -> tuple[HostedTool, ...]:
    """A server's tools/list result (mcp `Tool` objects) -> its hosted tools, in the server's order."""
    taken: set[str] = set()
    out = []
    for tool in listed:
        name = qualified_name(server, tool.name, taken)
        taken.add(name)
        out.append(HostedTool(name=name, server=server, tool=tool.name, description=tool.description or "",
                              parameters_json=json.dumps(input_parameters(tool.input_schema), ensure_ascii=False)))
    return tuple(out)


def _block_text(block: Any) -> str:
    kind = getattr(block, "type", None)
    if kind == "text":
        return str(block.text)
    if kind in ("image", "audio"):
        return f"[{kind} content: {getattr(block, 'mime_type', 'unknown type')}]"
    if kind == "resource":
        resource = block.resource
        text = getattr(resource, "text", None)
        return str(text) if text is not None else f"[binary resource {resource.uri}]"
    if kind == "resource_link":
        return f"[resource link: {block.uri}]"
    return f"[{kind} content]"


def result_text(content: Sequence[Any], structured: Any, max_chars: int) -> str:
    """A CallToolResult's content blocks as one text (structured content when there is no text),
    cut at max_chars so one chatty tool cannot fill the context."""
    text = "\n".join(_block_text(b) for b in content)
    if not text and structured is not None:
        text = json.dumps(structured, ensure_ascii=False)
    if len(text) > max_chars:
        text = text[:max_chars] + f"\n[truncated: {len(text) - max_chars} more characters]"
    return text
