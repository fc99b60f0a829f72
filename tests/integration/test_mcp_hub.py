"""The MCP hub against real MCP servers (no model): stdio and streamable HTTP, tool naming and
schemas, refresh, and servers that crash, hang, return garbage or never start."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.gateway.mcp.config import McpConfigError, load_config, parse_config
from sluicegate.gateway.mcp.hub import McpHub
from tests.mcp_servers.harness import TEST_TOKEN, stdio_entry, weather_entry, weather_url, write_config

__all__ = ["weather_url"]  # the fixture, imported so pytest finds it

pytest.importorskip("mcp")


async def _hub(servers: dict[str, Any], **loop: Any) -> McpHub:
    hub = McpHub(parse_config({"mcpServers": servers, "sluicegate": loop}))
    await hub.start()
    return hub


@pytest.fixture
async def calc_weather(weather_url: str) -> AsyncIterator[McpHub]:
    hub = await _hub({"calc": stdio_entry("calc_stdio.py"), "weather": weather_entry(weather_url)},
                     refreshIntervalS=0.5)
    yield hub
    await hub.stop()


async def test_stdio_and_http_tools_are_listed_and_called(calc_weather: McpHub) -> None:
    hub = calc_weather
    assert {s["status"] for s in hub.status().values()} == {"up"}
    names = {t.name for t in hub.all_tools()}
    assert {"calc__add", "calc__echo", "calc__fail", "weather__get_forecast", "weather__whoami"} <= names
    add = hub.find("calc__add")
    assert add is not None and add.server == "calc" and add.tool == "add"
    assert add.parameters["properties"] == {"a": {"title": "A", "type": "integer"},
                                            "b": {"title": "B", "type": "integer"}}
    assert add.parameters["additionalProperties"] is False  # the grammar invents no other argument
    assert add.function_tool()["function"]["description"] == "Add two integers."
    out = await hub.call(add, json.dumps({"a": 2, "b": 40}))
    assert (out.output, out.is_error, out.error) == ("42", False, None)
    forecast = hub.find("weather__get_forecast")
    assert forecast is not None
    out = await hub.call(forecast, '{"city": "Oslo"}')
    assert out.output == "Sunny in Oslo, 21 C" and not out.is_error
    whoami = hub.find("weather__whoami")
    assert whoami is not None
    assert (await hub.call(whoami, "{}")).output == TEST_TOKEN  # the config's headers reach the server


async def test_tool_error_result_is_an_error_outcome(calc_weather: McpHub) -> None:
    fail = calc_weather.find("calc__fail")
    assert fail is not None
    out = await calc_weather.call(fail, '{"message": "boom"}')
    assert out.is_error and out.error is None and "fail" in out.output  # the tool answered, with isError


async def test_refresh_picks_up_a_changed_tool_list(calc_weather: McpHub) -> None:
    hub = calc_weather
    assert hub.find("calc__secret") is None
    changed = asyncio.Event()
    hub.on_tools_changed(changed.set)
    unlock = hub.find("calc__unlock")
    assert unlock is not None
    assert (await hub.call(unlock, "{}")).output == "unlocked"
    await asyncio.wait_for(changed.wait(), 10)
    secret = hub.find("calc__secret")
    assert secret is not None
    assert (await hub.call(secret, "{}")).output == "the secret is 42"


async def test_crashing_server_is_reported_and_restarted() -> None:
    hub = await _hub({"crashy": stdio_entry("crashy_stdio.py")}, callTimeoutS=10)
    try:
        hello, crash = hub.find("crashy__hello"), hub.find("crashy__crash")
        assert hello is not None and crash is not None
        first_pid = (await hub.call(hello, '{"name": "a"}')).output.rsplit(" ", 1)[1]
        out = await hub.call(crash, "{}")
        assert out.is_error and out.error is not None and "closed the connection" in out.error
        deadline = time.monotonic() + 30
        while hub.connections["crashy"].status != "up" or hub.connections["crashy"].restarts == 0:
            assert time.monotonic() < deadline, hub.status()
            await asyncio.sleep(0.1)
        again = await hub.call(hello, '{"name": "b"}')
        assert not again.is_error and again.output.rsplit(" ", 1)[1] != first_pid  # a new process
    finally:
        await hub.stop()


async def test_hanging_tool_times_out_and_the_server_keeps_serving() -> None:
    hub = await _hub({"hang": stdio_entry("hang_stdio.py")}, callTimeoutS=1)
    try:
        sleep, ping = hub.find("hang__sleep"), hub.find("hang__ping")
        assert sleep is not None and ping is not None
        t0 = time.monotonic()
        out = await hub.call(sleep, '{"seconds": 60}')
        assert time.monotonic() - t0 < 5
        assert out.is_error and out.error == "MCP server 'hang' did not answer 'sleep' within 1s"
        assert (await hub.call(ping, "{}")).output == "pong"
    finally:
        await hub.stop()


async def test_servers_that_never_start_are_marked_down_without_blocking() -> None:
    t0 = time.monotonic()
    hub = await _hub({"dead": stdio_entry("crashy_stdio.py", CRASH_ON_START="1"),
                      "stuck": stdio_entry("hang_stdio.py", HANG_ON_START="1"),
                      "missing": {"command": "/nonexistent/mcp-server"}},
                     connectTimeoutS=3)
    try:
        assert time.monotonic() - t0 < 15
        status = hub.status()
        assert {s["status"] for s in status.values()} == {"down"}, status
        assert "no answer within 3s" in status["stuck"]["error"]
        assert hub.tools_of("dead") == []
    finally:
        await hub.stop()


async def test_garbage_answers_give_clear_errors() -> None:
    hub = await _hub({"garbage": stdio_entry("garbage_stdio.py")}, callTimeoutS=2)
    try:
        bad, noise = hub.find("garbage__bad_shape"), hub.find("garbage__noise")
        assert bad is not None and noise is not None
        out = await hub.call(bad, "{}")
        assert out.is_error and out.error is not None and "malformed result" in out.error
        out = await hub.call(noise, "{}")
        assert out.is_error and out.error is not None
        assert "did not answer 'noise' within 2s (it sent an unusable message" in out.error
    finally:
        await hub.stop()


def test_config_format(tmp_path: Path) -> None:
    path = write_config(tmp_path / "mcp.json", {
        "calc": stdio_entry("calc_stdio.py", K="V"), "weather": {"url": "http://x/mcp", "timeout": 5},
        "off": {"command": "x", "disabled": True}}, maxRounds=3)
    cfg = load_config(path)
    assert [s.label for s in cfg.servers] == ["calc", "weather"]
    assert cfg.servers[0].transport == "stdio" and cfg.servers[0].env == (("K", "V"),)
    assert cfg.servers[1].transport == "streamable-http" and cfg.servers[1].call_timeout_s == 5
    assert cfg.loop.max_rounds == 3
    bad: dict[str, Any]
    for bad in ({"mcpServers": {"a__b": {"command": "x"}}}, {"mcpServers": {"a": {"command": "x", "url": "y"}}},
                {"mcpServers": {"a": {"url": "y", "type": "sse"}}}, {"mcpServers": {"a": {"comand": "x"}}},
                {"mcpServers": {}, "sluicegate": {"maxRounds": 0}}, {"servers": {}}):
        with pytest.raises(McpConfigError):
            parse_config(bad)
