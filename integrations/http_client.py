"""A small httpx client for sluicegate's OpenAI-compatible HTTP API, shared by the integrations.

Plain JSON in and out (the integrations build OpenAI-shaped request bodies themselves), SSE
streams parsed into chunk dicts, and the server's OpenAI error objects raised as
`SluicegateAPIError` (an error inside a stream, sent in-band after the 200, raises too).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


class SluicegateAPIError(RuntimeError):
    """The server answered with an error (status, and the OpenAI error object's message/code)."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(f"sluicegate returned {status}: {message}")
        self.status = status
        self.message = message
        self.code = code


def closed_schema(schema: Any) -> Any:
    """`additionalProperties: false` on every object that does not say otherwise (OpenAI's strict
    mode): the grammar then allows the declared keys only, so a small model cannot pad a call
    with invented arguments that the tool's function would reject."""
    if isinstance(schema, list):
        return [closed_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed_schema(v) for k, v in schema.items()}
    if out.get("type") == "object" or "properties" in out:
        out.setdefault("additionalProperties", False)
    return out


def api_root(base_url: str) -> str:
    """`http://host:port`, `.../v1` or `.../v1/` -> `http://host:port/v1`."""
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        err = response.json().get("error", {})
    except ValueError:
        err = {}
    raise SluicegateAPIError(response.status_code, str(err.get("message") or response.text), err.get("code"))


def _sse_data(line: str) -> dict[str, Any] | None:
    """One SSE line -> its JSON payload (None for blank lines, comments and [DONE])."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    payload: dict[str, Any] = json.loads(data)
    if "error" in payload:  # reported in-band once the stream had begun
        err = payload["error"] or {}
        raise SluicegateAPIError(500, str(err.get("message")), err.get("code"))
    return payload


@dataclass(frozen=True)
class SluicegateHTTP:
    """Where the server is and how to reach it; each call opens its own httpx client, so one
    instance works from any thread or event loop."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str | None = None
    timeout: float | None = 120.0
    max_retries: int = 2  # connection failures only: a request the server saw is never re-sent

    def _options(self) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return {"base_url": api_root(self.base_url), "headers": headers, "timeout": self.timeout}

    def _client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(retries=self.max_retries), **self._options())

    def _aclient(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(retries=self.max_retries), **self._options())

    def get(self, path: str) -> dict[str, Any]:
        with self._client() as client:
            response = client.get(path)
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._client() as client:
            response = client.post(path, json=body)
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        with self._client() as client, client.stream("POST", path, json={**body, "stream": True}) as response:
            if not response.is_success:
                response.read()
                _raise_for(response)
            for line in response.iter_lines():
                payload = _sse_data(line)
                if payload is not None:
                    yield payload

    async def aget(self, path: str) -> dict[str, Any]:
        async with self._aclient() as client:
            response = await client.get(path)
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    async def apost(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._aclient() as client:
            response = await client.post(path, json=body)
        _raise_for(response)
        result: dict[str, Any] = response.json()
        return result

    async def astream(self, path: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async with self._aclient() as client, client.stream("POST", path, json={**body, "stream": True}) as response:
            if not response.is_success:
                await response.aread()
                _raise_for(response)
            async for line in response.aiter_lines():
                payload = _sse_data(line)
                if payload is not None:
                    yield payload
