"""Security: the API key is compared in constant time and never logged; CORS is off unless
configured; MCP servers come only from the operator's config (a request cannot start a process)."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import httpx
import psutil
import pytest

from tests.reliability.conftest import API_KEY, CORS_ORIGIN

pytestmark = pytest.mark.slow


def test_api_key_is_compared_with_compare_digest(servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    url = servers.urls["keyed"]
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY[:-1]}x"}).status_code == 401
    assert httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers={"x-api-key": API_KEY}).status_code == 200
    assert httpx.get(f"{url}/v1/models").status_code == 401
    assert len(seen) == 4 and all(b == API_KEY.encode() for _, b in seen)


def test_api_key_never_logged(servers: Any, caplog: pytest.LogCaptureFixture) -> None:
    url = servers.urls["keyed"]
    caplog.set_level(logging.DEBUG)
    for key in (API_KEY, API_KEY + "x", "wrong"):
        headers = {"Authorization": f"Bearer {key}"}
        httpx.get(f"{url}/v1/models", headers=headers)
        httpx.post(f"{url}/v1/chat/completions", headers=headers, json={"model": servers.model, "max_tokens": 1,
                                                                         "messages": [{"role": "user", "content": "hi"}]})
        httpx.post(f"{url}/v1/chat/completions", headers=headers, content=b"{broken")
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert API_KEY not in text
    servers.wait_idle()


def test_cors_is_off_unless_configured(servers: Any) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    r = httpx.options(f"{servers.url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(f"{servers.url}/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    cors = servers.urls["cors"]
    r = httpx.options(f"{cors}/v1/chat/completions", headers={**preflight, "Origin": CORS_ORIGIN})
    assert r.headers.get("access-control-allow-origin") == CORS_ORIGIN
    r = httpx.options(f"{cors}/v1/chat/completions", headers=preflight)
    assert r.headers.get("access-control-allow-origin") != "https://evil.example"


def test_requests_cannot_start_mcp_processes(servers: Any) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    hi = [{"role": "user", "content": "hi"}]
    for tool in ({"type": "mcp", "server_label": "calc"},
                 {"type": "mcp", "server_label": "x", "command": "sh", "args": ["-c", "touch /tmp/pwned"]},
                 {"type": "mcp", "server_label": "x", "server_url": "http://127.0.0.1:1/mcp"}):
        r = httpx.post(f"{servers.url}/v1/chat/completions", timeout=30,
                       json={"model": servers.model, "messages": hi, "max_tokens": 1, "tools": [tool]})
        assert r.status_code == 400, r.text
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before
