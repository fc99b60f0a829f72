"""Smoke tests: each runnable example against a live server (its own process, as a user runs it),
checking the tool loop completed with a valid call and the tool's correct result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import LiveServers
from tests.integration.grpc_support import GatewayApp, serve_app

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "examples"))
from units import convert_length  # noqa: E402


@pytest.fixture(scope="module")
def gw(live: LiveServers) -> Iterator[GatewayApp]:
    with serve_app(live) as app:
        yield app


def _run(script: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / script), *args], capture_output=True,
                          text=True, timeout=240, env=env, cwd=REPO)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT "), proc.stdout
    result: dict[str, Any] = json.loads(last.removeprefix("RESULT "))
    return result


def _check_calls(result: dict[str, Any]) -> None:
    assert result["calls"], result
    for call in result["calls"]:
        args = call["arguments"]
        assert call["result"] == convert_length(args["value"], args["from_unit"], args["to_unit"])


@pytest.mark.parametrize("script", ["openai_tool_loop.py", "langchain_agent.py", "llama_index_agent.py"])
def test_http_examples(script: str, gw: GatewayApp, live: LiveServers) -> None:
    result = _run(script, "--base-url", f"{gw.http_url}/v1")
    _check_calls(result)
    assert result["answer"].strip()
    live.wait_idle()


def test_grpc_example(gw: GatewayApp, live: LiveServers) -> None:
    result = _run("grpc_client.py", "--target", gw.grpc_target)
    _check_calls(result)
    assert result["answer"].strip() and result["verdict"] in ("yes", "no")
    assert result["cached_tokens"] > 0  # the second turn re-used the first turn's prompt
    live.wait_idle()
