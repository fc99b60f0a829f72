"""The gateway with hosted MCP servers, end to end with the default model (SmolLM2-135M): the tool
loop over stdio and streamable-HTTP servers (JSON and SSE), a hanging and a crashing server, mixed
client/hosted tools, and a real MCP client against /mcp. The tiny model is made deterministic by
forcing round 0's call with tool_choice and by greedy decoding."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import API_KEY, LiveServers
from tests.live_server import wait_ready
from tests.mcp_servers.harness import free_port, stdio_entry, weather_entry, weather_url, write_config

__all__ = ["weather_url"]  # the fixture, imported so pytest finds it

pytest.importorskip("mcp")
pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _serve_on(live: LiveServers, app: Any) -> tuple[str, Any, Any]:
    """Serve `app` on the live servers' loop (the engine delivers its outputs there)."""
    import uvicorn

    assert live.loop is not None
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, timeout_graceful_shutdown=5))
    future = asyncio.run_coroutine_threadsafe(server.serve(), live.loop)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    return url, server, future


@pytest.fixture(scope="module")
def gw(live: LiveServers, weather_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A keyed gateway app over the shared engine, hosting calc (stdio), weather (HTTP), hang, crashy."""
    from sluicegate.gateway.app import create_app
    from sluicegate.gateway.settings import ServeSettings

    config = write_config(tmp_path_factory.mktemp("mcp") / "mcp.json", {
        "calc": stdio_entry("calc_stdio.py"), "weather": weather_entry(weather_url),
        "hang": stdio_entry("hang_stdio.py"), "crashy": stdio_entry("crashy_stdio.py")},
        maxRounds=2, callTimeoutS=2)
    app = create_app(ServeSettings(api_key=API_KEY, mcp_config=str(config)), engine=live.engine,
                     progress=lambda _: None)
    url, server, future = _serve_on(live, app)
    yield url
    server.should_exit = True
    future.result(timeout=60)
    assert app.state.sg.mcp.hub.status()["calc"]["status"] == "stopped"  # processes stopped at shutdown


def _chat(url: str, model: str, **body: Any) -> httpx.Response:
    body = {"model": model, "temperature": 0, "max_tokens": 64, **body}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=AUTH, timeout=180)


def _force(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name}}


def _ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_loop_calls_a_stdio_tool_and_answers(gw: str, model_name: str, idle_engine: Any) -> None:
    r = _chat(gw, model_name, messages=_ask("What is 2 plus 3? Use the add tool."),
              tools=[{"type": "mcp", "server_label": "calc", "allowed_tools": ["add"]}],
              tool_choice=_force("calc__add"))
    assert r.status_code == 200, r.text
    data = r.json()
    message, finish = data["choices"][0]["message"], data["choices"][0]["finish_reason"]
    calls = message["mcp_calls"]
    assert calls and calls[0]["tool"] == "calc__add" and calls[0]["server_label"] == "calc"
    assert calls[0]["name"] == "add" and calls[0]["round"] == 0 and calls[0]["status"] == "completed"
    args = json.loads(calls[0]["arguments"])  # the grammar made them match add's inputSchema
    assert set(args) == {"a", "b"} and all(isinstance(v, int) for v in args.values())
    assert calls[0]["output"] == str(args["a"] + args["b"]) and calls[0]["is_error"] is False
    assert all(c["tool"] == "calc__add" for c in calls)  # allowed_tools: nothing else was offered
    assert finish in ("stop", "length") and isinstance(message["content"], str)
    assert message.get("tool_calls") is None
    assert data["usage"]["prompt_tokens"] > 0 and data["usage"]["completion_tokens"] > 0


def test_stream_shows_each_http_call_and_result(gw: str, model_name: str, idle_engine: Any) -> None:
    body = {"model": model_name, "temperature": 0, "max_tokens": 64, "stream": True,
            "stream_options": {"include_usage": True}, "messages": _ask("Weather in Paris?"),
            "tools": [{"type": "mcp", "server_label": "weather"}], "tool_choice": _force("weather__get_forecast"), "parallel_tool_calls": False}
    chunks = []
    with httpx.stream("POST", f"{gw}/v1/chat/completions", json=body, headers=AUTH, timeout=180) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    events = [c["choices"][0]["delta"]["mcp_calls"][0] for c in chunks
              if c["choices"] and "mcp_calls" in c["choices"][0]["delta"]]
    assert [e["status"] for e in events[:2]] == ["in_progress", "completed"], [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    started, done = events[0], events[1]
    assert started["id"] == done["id"] and started["output"] is None
    city = json.loads(done["arguments"])["city"]
    assert done["output"] == f"Sunny in {city}, 21 C" and done["tool"] == "weather__get_forecast"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_hanging_tool_times_out_and_the_gateway_keeps_serving(gw: str, model_name: str,
                                                               idle_engine: Any) -> None:
    r = _chat(gw, model_name, messages=_ask("Wait for me."), tools=[{"type": "mcp", "server_label": "hang"}],
              tool_choice=_force("hang__stall"), max_tokens=48)
    assert r.status_code == 200, r.text
    call = r.json()["choices"][0]["message"]["mcp_calls"][0]
    assert call["status"] == "failed" and call["is_error"] is True
    assert call["error"] == "MCP server 'hang' did not answer 'stall' within 2s"
    assert call["output"] == "Error: " + call["error"]  # what the model was told
    again = _chat(gw, model_name, messages=_ask("Say hi."), max_tokens=4)
    assert again.status_code == 200


def test_crashing_server_gives_an_error_for_that_call(gw: str, model_name: str, idle_engine: Any) -> None:
    r = _chat(gw, model_name, messages=_ask("Crash it."), tools=[{"type": "mcp", "server_label": "crashy"}],
              tool_choice=_force("crashy__crash"), max_tokens=48)
    assert r.status_code == 200, r.text
    first = r.json()["choices"][0]["message"]["mcp_calls"][0]
    assert first["status"] == "failed" and "closed the connection" in first["error"]
    ok = _chat(gw, model_name, messages=_ask("Add 1 and 1."), tools=[{"type": "mcp", "server_label": "calc"}],
               tool_choice=_force("calc__add"), max_tokens=48)
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["mcp_calls"][0]["status"] == "completed"


def test_client_function_tools_come_back_to_the_client(gw: str, model_name: str, idle_engine: Any) -> None:
    lookup = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string", "maxLength": 12}}, "required": ["q"]}}}
    r = _chat(gw, model_name, messages=_ask("Look up cats."),
              tools=[lookup, {"type": "mcp", "server_label": "calc"}], tool_choice=_force("lookup"))
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["mcp_calls"] == [], str(choice)
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "lookup" and set(json.loads(call["function"]["arguments"])) == {"q"}


def test_bad_mcp_requests(gw: str, live: LiveServers, model_name: str) -> None:
    unknown = _chat(gw, model_name, messages=_ask("x"), tools=[{"type": "mcp", "server_label": "nope"}])
    assert unknown.status_code == 400 and "nope" in unknown.json()["error"]["message"]
    n2 = _chat(gw, model_name, messages=_ask("x"), n=2, tools=[{"type": "mcp", "server_label": "calc"}])
    assert n2.status_code == 400
    unhosted = httpx.post(f"{live.url}/v1/chat/completions", timeout=30, json={
        "model": model_name, "messages": _ask("x"), "tools": [{"type": "mcp", "server_label": "calc"}]})
    assert unhosted.status_code == 400 and unhosted.json()["error"]["code"] == "mcp_not_configured"


def _text(result: Any) -> str:
    return str(result.content[0].text)


async def test_mcp_client_against_the_gateway(gw: str, idle_engine: Any) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=AUTH) as http:
        async with Client(streamable_http_client(f"{gw}/mcp", http_client=http)) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"chat", "generate", "calc__add", "weather__get_forecast", "hang__stall"} <= names
            added = await client.call_tool("calc__add", {"a": 20, "b": 22})
            assert not added.is_error and _text(added) == "42"
            chat = await client.call_tool("chat", {"prompt": "Say hello.", "max_tokens": 8})
            assert not chat.is_error and _text(chat).strip()
            gen = await client.call_tool("generate", {"prompt": "The capital of France is", "max_tokens": 4})
            assert not gen.is_error and _text(gen)
            bad = await client.call_tool("generate", {"prompt": "x", "max_tokens": 10**7})
            assert bad.is_error and "maximum context length" in _text(bad)
    denied = httpx.post(f"{gw}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert denied.status_code == 401

