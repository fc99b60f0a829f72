"""The LlamaIndex LLM against the live server: chat/complete/stream (sync and async), tools in
every mode, tool calls read back, structured_predict, the agent loop's message shapes, metadata."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts import PromptTemplate
from llama_index.core.tools import FunctionTool
from pydantic import BaseModel

from sluicegate.integrations.llama_index import Sluicegate
from tests.integration.conftest import LiveServers

pytestmark = pytest.mark.slow


def add(a: int, b: int) -> int:
    """Add two integers a and b."""
    return a + b


def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"sunny in {city}"


ADD = FunctionTool.from_defaults(fn=add)
WEATHER = FunctionTool.from_defaults(fn=get_weather)


@pytest.fixture
def llm(live: LiveServers) -> Iterator[Sluicegate]:
    yield Sluicegate(base_url=f"{live.url}/v1", temperature=0.0, max_tokens=64)
    live.wait_idle()


def test_metadata(llm: Sluicegate, live: LiveServers) -> None:
    meta = llm.metadata
    assert meta.is_chat_model and meta.is_function_calling_model
    assert meta.context_window == live.engine.max_model_len and meta.model_name == live.engine.model_name


def test_chat_complete_and_streams(llm: Sluicegate) -> None:
    # (texts are not compared across calls: a prefix-cache hit changes the prefill's shapes, and
    # with them the low bits of bf16 logits, so greedy text may differ after a few tokens)
    llm.max_tokens = 12
    messages = [ChatMessage(role=MessageRole.USER, content="Say hello.")]
    whole = llm.chat(messages)
    assert whole.message.role == MessageRole.ASSISTANT and whole.message.content
    assert whole.additional_kwargs["completion_tokens"] >= 1
    streamed = list(llm.stream_chat(messages))
    assert streamed[-1].message.content and "".join(r.delta or "" for r in streamed) == streamed[-1].message.content
    assert streamed[-1].additional_kwargs["prompt_tokens"] == whole.additional_kwargs["prompt_tokens"]
    assert llm.complete("Say hello.").text
    completion = list(llm.stream_complete("Say hello."))
    assert "".join(r.delta or "" for r in completion) == completion[-1].text


def test_async_variants(llm: Sluicegate) -> None:
    llm.max_tokens = 12
    messages = [ChatMessage(role=MessageRole.USER, content="Say hello.")]

    async def run() -> tuple[str, str, str]:
        chat = await llm.achat(messages)
        stream = await llm.astream_chat(messages)
        responses = [r async for r in stream]
        done = await llm.acomplete("Say hello.")
        return chat.message.content or "", responses[-1].message.content or "", done.text

    chat, streamed, completed = asyncio.run(run())
    assert chat and streamed and completed


def test_chat_with_tools_required_and_agent_turn(llm: Sluicegate) -> None:
    response = llm.chat_with_tools([ADD, WEATHER], user_msg="What is 12 plus 30?", tool_required=True)
    [call] = llm.get_tool_calls_from_response(response)
    assert call.tool_name in ("add", "get_weather") and call.tool_id.startswith("call_")
    tool = {"add": ADD, "get_weather": WEATHER}[call.tool_name]
    output = tool(**call.tool_kwargs)  # the grammar made the arguments valid for the schema
    history = [ChatMessage(role=MessageRole.USER, content="What is 12 plus 30?"), response.message,
               ChatMessage(role=MessageRole.TOOL, content=str(output),
                           additional_kwargs={"tool_call_id": call.tool_id, "name": call.tool_name})]
    final = llm.chat_with_tools([ADD, WEATHER], chat_history=history, tool_choice="none")
    assert final.message.content and not llm.get_tool_calls_from_response(final, error_on_no_tool_call=False)
    assert final.additional_kwargs["cached_tokens"] > 0  # the first turn's prompt is a prefix


def test_named_tool_and_stream_with_tools(llm: Sluicegate) -> None:
    responses = list(llm.stream_chat_with_tools([ADD, WEATHER], user_msg="Weather in Rome?",
                                                tool_choice="get_weather"))
    calls = llm.get_tool_calls_from_response(responses[-1])
    assert [c.tool_name for c in calls] == ["get_weather"] and isinstance(calls[0].tool_kwargs["city"], str)
    with pytest.raises(ValueError):
        llm.get_tool_calls_from_response(llm.chat([ChatMessage(role=MessageRole.USER, content="hi")]))


def test_parallel_calls_allowed(llm: Sluicegate) -> None:
    llm.max_tokens = 120
    response = llm.chat_with_tools([WEATHER], user_msg="Weather in Rome, Paris and Oslo?", tool_required=True,
                                   allow_parallel_tool_calls=True)
    calls = llm.get_tool_calls_from_response(response)
    assert calls and all(c.tool_name == "get_weather" and c.tool_kwargs.get("city") for c in calls)


class Person(BaseModel):
    name: str
    age: int


def test_structured_predict(llm: Sluicegate) -> None:
    llm.max_tokens = 60
    prompt = PromptTemplate("Extract the person: {text}")
    person = llm.structured_predict(Person, prompt, text="Alice is 31 years old.")
    assert isinstance(person, Person) and isinstance(person.age, int)

    async def run() -> Person:
        return await llm.astructured_predict(Person, prompt, text="Bob is 45 years old.")

    assert isinstance(asyncio.run(run()), Person)
