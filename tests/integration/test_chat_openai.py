"""The official `openai` client against a live server: create, stream, n, stop, seed, logprobs, usage."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "Say hello to the world."}]


def test_create(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=6, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == model_name
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.completion_tokens <= 6 and r.usage.prompt_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_stream_matches_create_and_reports_usage(client: Any, model_name: str, idle_engine: Any) -> None:
    whole = client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    # the same prompt again: its full blocks come from the prefix cache
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens > 0


def test_max_completion_tokens_n_and_seed(client: Any, model_name: str, idle_engine: Any) -> None:
    kw: dict[str, Any] = {"model": model_name, "messages": HELLO, "temperature": 1.0, "seed": 7}
    a = client.chat.completions.create(max_completion_tokens=5, n=3, **kw)
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert all(c.finish_reason in ("stop", "length") for c in a.choices)
    assert a.usage.completion_tokens <= 15
    b = client.chat.completions.create(max_completion_tokens=5, n=3, **kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]  # seeded


def test_stream_n_choices(client: Any, model_name: str, idle_engine: Any) -> None:
    chunks = list(client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=5, n=2, seed=3,
                                                 temperature=1.0, stream=True))
    by_index: dict[int, list[Any]] = {0: [], 1: []}
    for c in chunks:
        for choice in c.choices:
            by_index[choice.index].append(choice)
    for choices in by_index.values():
        assert choices[0].delta.role == "assistant"
        assert [ch.finish_reason for ch in choices if ch.finish_reason] in (["length"], ["stop"])


def test_stop_sequence(client: Any, model_name: str, idle_engine: Any) -> None:
    msgs = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    free = client.chat.completions.create(model=model_name, messages=msgs, max_tokens=20, temperature=0)
    text = free.choices[0].message.content
    assert len(text) > 3
    stop = text[2:4]
    cut = client.chat.completions.create(model=model_name, messages=msgs, max_tokens=20, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop"
    assert stop not in cut.choices[0].message.content
    assert text.startswith(cut.choices[0].message.content)


def test_logprobs(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=4, temperature=0,
                                       logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert bytes(entry.bytes) == entry.token.encode() or "\ufffd" in entry.token
    # greedy: the sampled token is the most likely one
    assert content[0].token == content[0].top_logprobs[0].token


def test_logit_bias_and_penalties_accepted(client: Any, model_name: str, model_tokenizer: Any,
                                           idle_engine: Any) -> None:
    first = client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=1, temperature=0,
                                           logprobs=True)
    token = first.choices[0].logprobs.content[0].token
    token_id = model_tokenizer.convert_tokens_to_ids(model_tokenizer.tokenize(token))[0]
    banned = client.chat.completions.create(model=model_name, messages=HELLO, max_tokens=1, temperature=0,
                                            logit_bias={str(token_id): -100}, presence_penalty=0.5,
                                            frequency_penalty=0.5, top_p=0.9)
    assert banned.choices[0].message.content != first.choices[0].message.content


def test_completions_endpoint(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.completions.create(model=model_name, prompt=["The capital of France is", "1, 2, 3,"],
                                  max_tokens=4, temperature=0, echo=True, logprobs=2)
    assert r.object == "text_completion" and len(r.choices) == 2
    assert r.choices[0].text.startswith("The capital of France is")
    assert len(r.choices[1].logprobs.tokens) == 4 or r.choices[1].finish_reason == "stop"
    streamed = list(client.completions.create(model=model_name, prompt="1, 2, 3,", max_tokens=4, temperature=0,
                                              stream=True))
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    assert "1, 2, 3," + text == r.choices[1].text


def test_models_and_health(client: Any, live: Any, model_name: str) -> None:
    import httpx

    assert [m.id for m in client.models.list().data] == [model_name]
    assert client.models.retrieve(model_name).id == model_name
    assert httpx.get(f"{live.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{live.url}/ready").status_code == 200


async def test_32_simultaneous_streams(async_client: Any, model_name: str, idle_engine: Any) -> None:
    async def one(i: int) -> tuple[str, str | None]:
        stream = await async_client.chat.completions.create(
            model=model_name, messages=[{"role": "user", "content": f"Write a word about the number {i}."}],
            max_tokens=8, temperature=0.7, seed=i, stream=True)
        text, reason = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                reason = chunk.choices[0].finish_reason or reason
        return text, reason

    results = await asyncio.gather(*(one(i) for i in range(32)))
    assert len(results) == 32
    assert all(reason in ("stop", "length") for _, reason in results)
    assert sum(1 for text, _ in results if text) >= 30  # an immediate EOS is allowed, not for all
