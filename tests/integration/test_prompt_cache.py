"""OpenAI's prompt-caching fields on a live server: prompt_cache_retention="24h" pins the prefix,
prompt_cache_key gets its own cache metrics, and a bad retention is a 400 naming the field."""

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
