"""Starting the test MCP servers and writing `mcpServers` configs for them (used by the test_mcp*
modules; fixtures are imported there so pytest finds them)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
TEST_TOKEN = "weather-token-7"


def script(name: str) -> str:
    return str(HERE / name)


def stdio_entry(name: str, **env: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"command": sys.executable, "args": [script(name)]}
    if env:
        entry["env"] = env
    return entry


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the weather MCP server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the weather MCP server did not listen on {port} within {timeout}s")


@pytest.fixture(scope="session")
def weather_url() -> Iterator[str]:
    """The streamable-HTTP test server, started once per session on 127.0.0.1."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, script("weather_http.py"), str(port)])
    try:
        _wait_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def weather_entry(url: str) -> dict[str, Any]:
    return {"url": url, "headers": {"X-Test-Token": TEST_TOKEN}}


def write_config(path: Path, servers: dict[str, Any], **loop: Any) -> Path:
    raw: dict[str, Any] = {"mcpServers": servers}
    if loop:
        raw["sluicegate"] = loop
    path.write_text(json.dumps(raw, indent=2))
    return path
