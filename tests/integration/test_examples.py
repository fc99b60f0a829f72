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


def test_curl_quickstart(gw: GatewayApp, live: LiveServers) -> None:
    env = {**os.environ, "MODEL": live.engine.model_name}
    proc = subprocess.run(["bash", str(REPO / "examples" / "quickstart.sh"), f"{gw.http_url}/v1"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    models, chat, structured = (json.loads(line) for line in proc.stdout.strip().splitlines())
    assert models["data"][0]["id"] == live.engine.model_name
    assert chat["choices"][0]["message"]["content"]
    place = json.loads(structured["choices"][0]["message"]["content"])
    assert set(place) == {"city", "country"}
    live.wait_idle()


def test_streamed_tool_calls_example(gw: GatewayApp, live: LiveServers) -> None:
    result = _run("stream_tool_calls.py", "--base-url", f"{gw.http_url}/v1")
    _check_calls(result)
    assert result["finish_reason"] == "tool_calls"
    live.wait_idle()


def test_pydantic_parse_example(gw: GatewayApp, live: LiveServers) -> None:
    result = _run("structured_parse.py", "--base-url", f"{gw.http_url}/v1")
    parsed = result["parsed"]
    assert result["result"] == convert_length(parsed["value"], parsed["from_unit"], parsed["to_unit"])
    live.wait_idle()


@pytest.mark.parametrize("first", ["auto", "required"])
def test_auto_tool_loop_example(first: str, gw: GatewayApp, live: LiveServers) -> None:
    result = _run("auto_tool_loop.py", "--base-url", f"{gw.http_url}/v1", "--first-tool-choice", first)
    assert 1 <= result["turns"] <= 4
    if first == "required":  # the loop ran a call, then "auto" turns until an answer
        _check_calls(result)
        assert result["turns"] >= 2
    for call in result["calls"]:
        args = call["arguments"]
        assert call["result"] == convert_length(args["value"], args["from_unit"], args["to_unit"])
    live.wait_idle()


def test_offline_llm_json_schema_example() -> None:
    """No server: the example loads the embedded model itself."""
    import jsonschema

    sys.path.insert(0, str(REPO / "examples"))
    from offline_json_schema import CITIES, SCHEMA

    result = _run("offline_json_schema.py")
    assert len(result["records"]) == len(CITIES)
    for record in result["records"]:
        jsonschema.validate(record, SCHEMA)


def _litellm_model_list() -> list[dict[str, Any]]:
    import yaml

    config = yaml.safe_load((REPO / "examples" / "litellm_config.yaml").read_text())
    return list(config["model_list"])


def test_litellm_config_names_sluicegate() -> None:
    (entry,) = _litellm_model_list()
    params = entry["litellm_params"]
    assert entry["model_name"] == "sluicegate"
    assert params["api_base"] == "http://127.0.0.1:8000/v1"  # `sluicegate serve`'s default address
    assert params["model"] == "openai/SmolLM2-135M-Instruct"


def test_litellm_router_reaches_the_live_server(gw: GatewayApp, live: LiveServers,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The config's model_list in LiteLLM's Router (what its proxy runs), pointed at this test's
    port: a chat reply and a forced tool call come back through LiteLLM."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price list
    litellm = pytest.importorskip("litellm")
    from units import openai_tool

    (entry,) = _litellm_model_list()
    entry["litellm_params"]["api_base"] = f"{gw.http_url}/v1"
    entry["litellm_params"]["model"] = f"openai/{live.engine.model_name}"
    router = litellm.Router(model_list=[entry])
    reply = router.completion(model="sluicegate", messages=[{"role": "user", "content": "Say hi"}],
                              max_tokens=8, temperature=0)
    assert reply.choices[0].message.content
    call = router.completion(model="sluicegate", messages=[{"role": "user", "content": "42 km in miles?"}],
                             tools=[openai_tool()], tool_choice="required", parallel_tool_calls=False,
                             max_tokens=64, temperature=0)
    (tool_call,) = call.choices[0].message.tool_calls
    args = json.loads(tool_call.function.arguments)
    assert set(args) == {"value", "from_unit", "to_unit"}
    live.wait_idle()
