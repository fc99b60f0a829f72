"""OpenAI's prompt-caching fields on a live server: prompt_cache_retention="24h" pins the prefix,
prompt_cache_key gets its own cache metrics, a bad retention is a 400 naming the field, and an
agent's next turn hits the cache through its previous answer."""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.slow

AGENT = [{"role": "system", "content": "You are a careful travel agent. " * 8},
         {"role": "user", "content": "Plan a day in Lisbon."}]


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_pinned_prefix_and_per_key_metrics(client: Any, live: Any, model_name: str, idle_engine: Any) -> None:
    pin = {"prompt_cache_key": "travel-agent", "prompt_cache_retention": "24h"}
    first = client.chat.completions.create(model=model_name, messages=AGENT, max_tokens=4, temperature=0,
                                           extra_body=pin)
    live.wait_idle()
    metrics = httpx.get(f"{live.url}/metrics").text
    assert _metric(metrics, "sluicegate_kv_cache_pinned_free_blocks") > 0
    again = client.chat.completions.create(model=model_name, messages=AGENT, max_tokens=4, temperature=0,
                                           extra_body=pin)
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    metrics = httpx.get(f"{live.url}/metrics").text
    key = '{prompt_cache_key="travel-agent"}'
    prompt_total = _metric(metrics, "sluicegate_prompt_cache_key_prompt_tokens_total", key)
    assert prompt_total == first.usage.prompt_tokens + again.usage.prompt_tokens
    assert _metric(metrics, "sluicegate_prompt_cache_key_cached_tokens_total", key) >= \
        again.usage.prompt_tokens_details.cached_tokens


def test_unknown_retention_is_a_400_naming_the_field(client: Any, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=model_name, messages=AGENT, max_tokens=2,
                                       extra_body={"prompt_cache_retention": "forever"})
    assert "prompt_cache_retention" in str(err.value)


def test_adapters_send_the_prompt_cache_fields() -> None:
    from langchain_core.messages import HumanMessage

    from sluicegate.integrations.langchain import ChatSluicegate
    from sluicegate.integrations.llama_index import Sluicegate

    chat = ChatSluicegate(model="m", prompt_cache_key="k", prompt_cache_retention="24h")
    body = chat._body("m", [HumanMessage("hi")], None, {})
    assert body["prompt_cache_key"] == "k" and body["prompt_cache_retention"] == "24h"
    llm = Sluicegate(model="m", prompt_cache_key="k", prompt_cache_retention="24h")
    body = llm._body([], {})
    assert body["prompt_cache_key"] == "k" and body["prompt_cache_retention"] == "24h"


def _tool(name: str, description: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"]}}}


TRAVEL_TOOLS = [_tool("get_weather", "Weather in a city"), _tool("find_restaurants", "Restaurants in a city"),
                _tool("get_attractions", "Top attractions in a city")]


@pytest.mark.parametrize("stream", [False, True])
def test_an_agents_next_turn_hits_the_cache_through_its_last_answer(client: Any, model_name: str,
                                                                    idle_engine: Any, stream: bool) -> None:
    """The next prompt's cache hit runs past the previous prompt into the answer, not only up to it,
    streamed or not (the answer's tokens are reused as generated: gateway/chat_format/turn_tokens.py;
    tests/unit/test_turn_tokens.py covers an answer the tokenizer would have spelled differently)."""
    messages: list[dict[str, Any]] = [*AGENT[:1], {"role": "user", "content": f"Plan a 3-day trip from London to Paris ({stream})."}]
    ask = {"model": model_name, "tools": TRAVEL_TOOLS, "tool_choice": "required", "max_tokens": 40, "temperature": 0}
    if stream:
        chunks = list(client.chat.completions.create(messages=messages, stream=True,
                                                     stream_options={"include_usage": True}, **ask))
        prompt_tokens = chunks[-1].usage.prompt_tokens
        deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        call_id, name = deltas[0].id, deltas[0].function.name
        arguments = "".join(d.function.arguments or "" for d in deltas)
    else:
        first = client.chat.completions.create(messages=messages, **ask)
        prompt_tokens = first.usage.prompt_tokens
        call = first.choices[0].message.tool_calls[0]
        call_id, name, arguments = call.id, call.function.name, call.function.arguments
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"sky": "clear", "high": 24}'}]
    again = client.chat.completions.create(messages=messages, **ask)
    block = 16
    assert again.usage.prompt_tokens_details.cached_tokens >= (prompt_tokens // block + 1) * block
