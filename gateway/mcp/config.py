"""`--mcp-config mcp.json`: the operator's MCP servers, in the common `mcpServers` format.

    {
      "mcpServers": {
        "calc":    {"command": "python", "args": ["calc.py"], "env": {"K": "V"}, "cwd": "/srv"},
        "weather": {"url": "http://127.0.0.1:9000/mcp", "headers": {"Authorization": "Bearer …"}}
      },
      "sluicegate": {"maxRounds": 8, "callTimeoutS": 30, "connectTimeoutS": 30,
                     "refreshIntervalS": 60, "maxResultChars": 16000}
    }

A server with `command` is started as a stdio subprocess; one with `url` is reached over streamable
HTTP (`"type": "sse"` is refused: that transport is deprecated). Per server, `"timeout"` (seconds)
overrides the per-call timeout and `"disabled": true` skips it. The optional `sluicegate` block tunes
the tool loop and the supervision; unknown keys anywhere are errors, never silently dropped.
Only this file (the operator's) starts processes: requests name servers by label, never commands.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LABEL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(_[A-Za-z0-9-]+)*$")  # no "__": it splits names


class McpConfigError(ValueError):
    """The config file is missing, not JSON, or describes a server wrongly."""


@dataclass(frozen=True)
class McpServerConfig:
    """One hosted server. Exactly one of `command` (stdio) or `url` (streamable HTTP) is set."""

    label: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    url: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    call_timeout_s: float | None = None  # None: the loop's default

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "streamable-http"


@dataclass(frozen=True)
class LoopConfig:
    """The tool loop and the supervision of the servers."""

    max_rounds: int = 8  # model turns per request; the last one may not call tools
    call_timeout_s: float = 30.0  # one MCP tool call
    connect_timeout_s: float = 30.0  # start + handshake + first tool list
    refresh_interval_s: float = 60.0  # re-list tools (and notice a dead server) this often
    max_result_chars: int = 16_000  # a tool result fed back to the model is cut here


@dataclass(frozen=True)
class McpConfig:
    servers: tuple[McpServerConfig, ...] = ()
    loop: LoopConfig = field(default_factory=LoopConfig)


_SERVER_KEYS = {"command", "args", "env", "cwd", "url", "headers", "type", "transport", "timeout", "disabled"}
_LOOP_KEYS = {"maxRounds": "max_rounds", "callTimeoutS": "call_timeout_s", "connectTimeoutS": "connect_timeout_s",
              "refreshIntervalS": "refresh_interval_s", "maxResultChars": "max_result_chars"}


def _str_map(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise McpConfigError(f"{where} must be an object of strings")
    return tuple((str(k), v) for k, v in value.items())


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise McpConfigError(f"{where} must be a positive number, got {value!r}")
    return float(value)


def parse_server(label: str, raw: Any) -> McpServerConfig | None:
    """One `mcpServers` entry (None when it is disabled)."""
    where = f"mcpServers.{label}"
    if not LABEL_PATTERN.match(label) or len(label) > 32:
        raise McpConfigError(f"{where}: a server label is 1-32 letters, digits, '-' or single '_'")
    if not isinstance(raw, dict):
        raise McpConfigError(f"{where} must be an object")
    unknown = sorted(set(raw) - _SERVER_KEYS)
    if unknown:
        raise McpConfigError(f"{where}: unknown keys {unknown}")
    if raw.get("disabled"):
        return None
    kind = raw.get("type", raw.get("transport"))
    if kind in ("sse",):
        raise McpConfigError(f"{where}: the SSE transport is not supported; use streamable HTTP")
    command, url = raw.get("command"), raw.get("url")
    if (command is None) == (url is None):
        raise McpConfigError(f"{where} needs exactly one of 'command' (stdio) or 'url' (streamable HTTP)")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise McpConfigError(f"{where}.args must be a list of strings")
    timeout = raw.get("timeout")
    return McpServerConfig(
        label=label, command=command, args=tuple(args), env=_str_map(raw.get("env"), f"{where}.env"),
        cwd=raw.get("cwd"), url=url, headers=_str_map(raw.get("headers"), f"{where}.headers"),
        call_timeout_s=None if timeout is None else _positive(timeout, f"{where}.timeout"))


def parse_loop(raw: Any) -> LoopConfig:
    if raw is None:
        return LoopConfig()
    if not isinstance(raw, dict):
        raise McpConfigError("'sluicegate' must be an object")
    unknown = sorted(set(raw) - set(_LOOP_KEYS))
    if unknown:
        raise McpConfigError(f"sluicegate: unknown keys {unknown} (known: {sorted(_LOOP_KEYS)})")
    values: dict[str, Any] = {}
    for key, name in _LOOP_KEYS.items():
        if key in raw:
            number = _positive(raw[key], f"sluicegate.{key}")
            values[name] = int(number) if name in ("max_rounds", "max_result_chars") else number
    return LoopConfig(**values)


def parse_config(raw: Any) -> McpConfig:
    if not isinstance(raw, dict) or not isinstance(raw.get("mcpServers", {}), dict):
        raise McpConfigError("the MCP config must be an object with an 'mcpServers' object")
    unknown = sorted(set(raw) - {"mcpServers", "sluicegate"})
    if unknown:
        raise McpConfigError(f"unknown top-level keys {unknown}")
    servers = [parse_server(label, entry) for label, entry in raw.get("mcpServers", {}).items()]
    return McpConfig(servers=tuple(s for s in servers if s is not None), loop=parse_loop(raw.get("sluicegate")))


def load_config(path: str | Path) -> McpConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"cannot read the MCP config {path}: {exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise McpConfigError(f"the MCP config {path} is not valid JSON: {exc}") from exc
    return parse_config(raw)
