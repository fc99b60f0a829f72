"""Tool calls through the official client: every tool_choice form, parallel calls, streaming deltas,
and a multi-turn conversation whose earlier calls render back so the prefix cache keeps hitting."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.slow

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "Current local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def _check_calls(message: Any, names: set[str], truncated: bool = False) -> list[dict[str, Any]]:
    """Every call well-formed; with truncated (finish_reason "length") the last may be cut short."""
    assert message.tool_calls, message
    args = []
    for call in message.tool_calls[:-1] if truncated else message.tool_calls:
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in names
        parsed = json.loads(call.function.arguments)  # exact JSON: the grammar made it
        assert set(parsed) == {"city"} and isinstance(parsed["city"], str)
        args.append(parsed)
    assert len({c.id for c in message.tool_calls}) == len(message.tool_calls)
    return args


def test_required_single_call(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=ASK, tools=TOOLS, tool_choice="required",
                                       parallel_tool_calls=False, max_tokens=40, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert len(choice.message.tool_calls) == 1
    _check_calls(choice.message, {"get_weather", "get_time"})


def test_named_tool_choice(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=ASK, tools=TOOLS, max_tokens=40, temperature=0,
                                       tool_choice={"type": "function", "function": {"name": "get_time"}})
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [c.function.name for c in choice.message.tool_calls] == ["get_time"]
    _check_calls(choice.message, {"get_time"})


def test_none_gives_text(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=ASK, tools=TOOLS, tool_choice="none",
                                       max_tokens=12, temperature=0)
    assert r.choices[0].message.tool_calls is None
    assert r.choices[0].finish_reason in ("stop", "length")


def test_auto_is_consistent(client: Any, model_name: str, idle_engine: Any) -> None:
    r = client.chat.completions.create(model=model_name, messages=ASK, tools=TOOLS, tool_choice="auto",
                                       max_tokens=40, temperature=0)
    choice = r.choices[0]
    if choice.message.tool_calls:
        assert choice.finish_reason in ("tool_calls", "length")
        _check_calls(choice.message, {"get_weather", "get_time"})
    else:
        assert choice.message.content and "<tool_call>" not in choice.message.content


def test_parallel_calls_streamed(client: Any, model_name: str, idle_engine: Any) -> None:
    msgs = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
    kw: dict[str, Any] = {"model": model_name, "messages": msgs, "tools": [WEATHER], "tool_choice": "required",
                          "parallel_tool_calls": True, "max_tokens": 100, "temperature": 0}
    whole = client.chat.completions.create(**kw)
    truncated = whole.choices[0].finish_reason == "length"
    assert len(whole.choices[0].message.tool_calls) >= 2 + truncated, whole
    _check_calls(whole.choices[0].message, {"get_weather"}, truncated)

    calls: dict[int, dict[str, Any]] = {}
    reason = None
    for chunk in client.chat.completions.create(stream=True, **kw):
        for delta_call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            if delta_call.index not in calls:  # first delta of a call: index, id, type, name
                assert delta_call.id and delta_call.type == "function" and delta_call.function.name
                calls[delta_call.index] = {"id": delta_call.id, "name": delta_call.function.name, "args": ""}
            else:
                assert delta_call.id is None and delta_call.function.name is None
            calls[delta_call.index]["args"] += delta_call.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            reason = chunk.choices[0].finish_reason
    assert sorted(calls) == list(range(len(calls)))  # indices 0, 1, ...
    streamed = [(c["name"], c["args"]) for _, c in sorted(calls.items())]
    assert streamed == [(c.function.name, c.function.arguments) for c in whole.choices[0].message.tool_calls]
    assert reason == whole.choices[0].finish_reason


def test_multi_turn_hits_prefix_cache(client: Any, model_name: str, idle_engine: Any) -> None:
    """Each turn appends the last call and its result; the prompt before it comes from the cache."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a travel agent. Use tools."},
                                      {"role": "user", "content": "Weather in Paris, then in Rome?"}]
    prompts, cached = [], []
    for turn in range(3):
        r = client.chat.completions.create(model=model_name, messages=messages, tools=TOOLS,
                                           tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                           max_tokens=30, temperature=0)
        prompts.append(r.usage.prompt_tokens)
        cached.append(r.usage.prompt_tokens_details.cached_tokens)
        call = r.choices[0].message.tool_calls[0]
        messages.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.function.name, "arguments": call.function.arguments}}]})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 20 + turn})})
    block = 16
    for turn in (1, 2):
        # everything the previous turn's prompt had in full blocks is served from the cache
        assert cached[turn] >= (prompts[turn - 1] // block) * block - block, (prompts, cached)
