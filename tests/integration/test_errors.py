"""Every error status the gateway sends, as the official client sees it (its exception classes)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import API_KEY

pytestmark = pytest.mark.slow

HI = [{"role": "user", "content": "hi"}]


def _body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict) and set(body) >= {"message", "type", "param", "code"}, body
    return body


def test_bad_values_are_400(client: Any, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model_name, messages=HI, temperature=5)
    assert _body(exc.value)["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model_name, messages=HI, extra_body={"bogus_option": 1})
    assert "Unrecognized request argument" in _body(exc.value)["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model_name, messages=[])
    with pytest.raises(openai.BadRequestError):  # FastAPI's 422 is OpenAI's 400
        client.post("/chat/completions", body={"model": model_name}, cast_to=httpx.Response)
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model_name, messages=HI, logprobs=True, top_logprobs=50)
    assert _body(exc.value)["param"] == "top_logprobs"


def test_context_overflow_is_400_like_openai(client: Any, model_name: str, live: Any) -> None:
    limit = live.engine.max_model_len
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model_name, messages=[{"role": "user", "content": "hi " * (limit + 10)}],
                                       max_tokens=5)
    body = _body(exc.value)
    assert "maximum context length" in body["message"] and body["code"] == "context_length_exceeded"


def test_tool_and_schema_errors_are_400(client: Any, model_name: str) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model_name, messages=HI, tools=[tool],
                                       tool_choice={"type": "function", "function": {"name": "nope"}})
    assert _body(exc.value)["param"] == "tool_choice"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model_name, messages=HI, tool_choice="required")  # no tools
    bad_schema = {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "no-such-type"}}}}
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=model_name, messages=HI, max_tokens=5,
                                       response_format={"type": "json_schema", "json_schema": bad_schema})


def test_unknown_model_is_404(client: Any) -> None:
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="gpt-9", messages=HI)
    assert _body(exc.value)["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_api_key_401(live: Any, model_name: str) -> None:
    from openai import OpenAI

    url = f"{live.urls['keyed']}/v1"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
    assert httpx.get(f"{url}/models").status_code == 401  # no key at all
    good = OpenAI(base_url=url, api_key=API_KEY, max_retries=0)
    assert good.models.list().data[0].id == model_name
    assert httpx.get(f"{live.urls['keyed']}/health").status_code == 200  # probes need no key


def test_body_too_large_413(live: Any, model_name: str) -> None:
    big = {"model": model_name, "messages": [{"role": "user", "content": "x" * (17 * 1024 * 1024)}]}
    r = httpx.post(f"{live.url}/v1/chat/completions", json=big, timeout=60)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_queue_full_429_with_retry_after(live: Any, model_name: str) -> None:
    from openai import OpenAI

    full = OpenAI(base_url=f"{live.urls['full']}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as exc:
        full.chat.completions.create(model=model_name, messages=HI, max_tokens=2)
    assert exc.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.RateLimitError):
        full.chat.completions.create(model=model_name, messages=HI, max_tokens=2, stream=True)


async def test_loading_is_503() -> None:
    """An app whose engine has not loaded yet (its lifespan has not run) refuses with 503."""
    from openai import AsyncOpenAI

    from sluicegate.gateway.app import create_app

    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/ready")).status_code == 503
        assert (await http.get("/health")).status_code == 200
        client = AsyncOpenAI(base_url="http://test/v1", api_key="x", http_client=http, max_retries=0)
        with pytest.raises(openai.InternalServerError) as exc:
            await client.models.list()
        assert exc.value.status_code == 503 and exc.value.response.headers["retry-after"] == "1"
