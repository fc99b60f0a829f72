"""Request validation (400s with the field named), error objects, API-key check, SSE framing."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sluicegate.gateway import errors
from sluicegate.gateway.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    CompletionRequest,
    Delta,
)
from sluicegate.gateway.streaming import DONE, chat_chunk_payload, sse_event

MSG = [{"role": "user", "content": "hi"}]


def _app() -> TestClient:
    app = FastAPI()
    errors.install_error_handlers(app)

    @app.post("/chat")
    async def chat(body: ChatCompletionRequest) -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/boom")
    async def boom() -> None:
        raise errors.queue_full(3)

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("extra, param", [
    ({"temperature": 3}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 0}, "n"),
    ({"presence_penalty": -3}, "presence_penalty"),
    ({"logit_bias": {"abc": 1}}, "logit_bias"),
    ({"logit_bias": {"5": 101}}, "logit_bias"),
    ({"stop": ["", "x"]}, "stop"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
])
def test_invalid_values_are_400_naming_the_field(extra: dict, param: str) -> None:
    r = _app().post("/chat", json={"model": "m", "messages": MSG, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    assert err["param"] is None or err["param"].startswith(param.split(".")[0]), err


def test_unknown_field_missing_field_and_bad_json() -> None:
    client = _app()
    r = client.post("/chat", json={"model": "m", "messages": MSG, "frobnicate": 1})
    assert r.status_code == 400 and "Unrecognized request argument supplied: frobnicate" in r.json()["error"]["message"]
    r = client.post("/chat", json={"model": "m"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = client.post("/chat", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_accepted_fields_and_message_kinds() -> None:
    req = ChatCompletionRequest.model_validate({
        "model": "m", "user": "u", "store": False, "metadata": {"a": "b"}, "stream_options": {"include_usage": True},
        "messages": [
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}, "max_completion_tokens": 7})
    assert req.output_limit() == 7 and len(req.messages) == 4
    with pytest.raises(ValueError):
        ChatCompletionRequest.model_validate({"model": "m", "messages": MSG, "tool_choice": "required"})
    with pytest.raises(ValueError):
        CompletionRequest.model_validate({"model": "m", "prompt": "x", "suffix": "y"})


def test_rate_limit_error_has_retry_after() -> None:
    r = _app().post("/boom")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["type"] == "rate_limit_exceeded"


def test_api_key_compare() -> None:
    assert errors.api_key_matches("k1", "Bearer k1")
    assert errors.api_key_matches("k1", "bearer k1 ")
    assert errors.api_key_matches("k1", None, "k1")
    assert not errors.api_key_matches("k1", "Bearer k2")
    assert not errors.api_key_matches("k1", None)
    assert not errors.api_key_matches("k1", "k1")  # no scheme


def test_engine_errors_map_to_statuses() -> None:
    from sluicegate.engine.params import InvalidRequestError
    from sluicegate.grammars.backend import GrammarError

    overflow = InvalidRequestError("This model's maximum context length is 8 tokens.", "messages",
                                   "context_length_exceeded")
    mapped = errors.from_engine_error(overflow)
    assert mapped is not None and mapped.status == 400 and mapped.code == "context_length_exceeded"
    grammar = errors.from_engine_error(GrammarError("bad schema"))
    assert grammar is not None and grammar.status == 400 and grammar.param == "response_format"

    class QueueFullError(RuntimeError):
        pass

    full = errors.from_engine_error(QueueFullError("full"), retry_after_s=2)
    assert full is not None and full.status == 429 and full.headers == {"Retry-After": "2"}
    assert errors.from_engine_error(KeyError("x")) is None


def test_sse_framing() -> None:
    chunk = ChatCompletionChunk(id="c", created=1, model="m",
                                choices=[ChunkChoice(index=0, delta=Delta(content="hi"))])
    event = sse_event(chat_chunk_payload(chunk, include_usage=False))
    assert event.startswith("data: ") and event.endswith("\n\n") and "\n" not in event[:-2]
    data = json.loads(event[6:])
    assert data["choices"][0] == {"index": 0, "delta": {"content": "hi"}, "logprobs": None, "finish_reason": None}
    assert "usage" not in data
    with_usage = json.loads(sse_event(chat_chunk_payload(chunk, include_usage=True))[6:])
    assert with_usage["usage"] is None
    assert DONE == "data: [DONE]\n\n"
