"""Structured outputs: chat.completions.parse with a pydantic model, json_object, and langchain-openai's
ChatOpenAI (bind_tools, with_structured_output) against the live server."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

pytestmark = pytest.mark.slow


class City(BaseModel):
    model_config = ConfigDict(extra="forbid")  # additionalProperties: false, so the grammar closes the object
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population_millions: int = Field(ge=0, le=99)


PROMPT = [{"role": "user", "content": "Describe Paris as JSON."}]


def test_parse_with_pydantic(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.parse(model=model_name, messages=PROMPT, response_format=City,
                                      max_tokens=80, temperature=0)
    parsed = r.choices[0].message.parsed
    assert isinstance(parsed, City)
    assert City.model_validate_json(r.choices[0].message.content) == parsed


def test_json_object_and_streamed_schema(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=PROMPT, response_format={"type": "json_object"},
                                       max_tokens=60, temperature=0)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    schema = {"name": "city", "strict": True, "schema": City.model_json_schema()}
    chunks = client.chat.completions.create(model=model_name, messages=PROMPT, max_tokens=80, temperature=0,
                                            response_format={"type": "json_schema", "json_schema": schema},
                                            stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    City.model_validate_json(text)


def test_langchain_bind_tools(live: Any, model_name: str, idle_engine: Any) -> None:
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        return f"sunny in {city}"

    llm = ChatOpenAI(base_url=f"{live.url}/v1", api_key="unused", model=model_name, max_tokens=40,
                     temperature=0, max_retries=0)
    msg = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert msg.tool_calls and msg.tool_calls[0]["name"] == "get_weather"
    assert isinstance(msg.tool_calls[0]["args"]["city"], str)
    assert msg.response_metadata["finish_reason"] == "tool_calls"
    streamed = None
    for part in llm.bind_tools([get_weather], tool_choice="required").stream("Weather in Rome?"):
        streamed = part if streamed is None else streamed + part
    assert streamed is not None and streamed.tool_calls[0]["name"] == "get_weather"


def test_langchain_structured_output(live: Any, model_name: str, idle_engine: Any) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=f"{live.url}/v1", api_key="unused", model=model_name, max_tokens=80,
                     temperature=0, max_retries=0)
    city = llm.with_structured_output(City).invoke("Describe Paris.")
    assert isinstance(city, City)
    via_tools = llm.with_structured_output(City, method="function_calling").invoke("Describe Rome.")
    assert isinstance(via_tools, City)
