"""The call budget: an answer with parallel calls ends after its last complete call when another
one cannot fit in max_tokens, instead of with a call cut in half."""

from __future__ import annotations

import json

import pytest

from sluicegate.engine.params import SamplingParams
from sluicegate.grammars.specs import ToolCalls, ToolSpec
from sluicegate.grammars.tool_budget import CallBudget, CallTracker, call_budget, shortest_instance
from sluicegate.grammars.tool_formats import parse_tool_calls

WEATHER = ToolSpec.of("get_weather", {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}}, "required": ["city"]})
TIME = ToolSpec.of("get_time", {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


@pytest.mark.parametrize(("schema", "expected"), [
    ({"type": "string", "minLength": 3}, "aaa"),
    ({"type": "integer", "minimum": 5}, 6),
    ({"type": "number"}, 0),
    ({"type": "boolean"}, True),
    ({"enum": ["long value", "ab"]}, "ab"),
    ({"type": ["string", "null"]}, ""),
    ({"anyOf": [{"type": "array", "minItems": 2, "items": {"type": "integer"}}, {"type": "null"}]}, None),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["b"]}, {"b": 0}),
    ({"$defs": {"p": {"type": "object", "properties": {"x": {"const": 1}}, "required": ["x"]}},
      "type": "object", "properties": {"p": {"$ref": "#/$defs/p"}}, "required": ["p"]}, {"p": {"x": 1}}),
    ({"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}]}, {"a": 0, "b": True}),
])
def test_shortest_instance(schema: dict, expected: object) -> None:
    assert shortest_instance(schema, schema) == expected


def test_budget_applies_to_parallel_calls_only() -> None:
    encode = lambda text: text.split()  # noqa: E731 (a stand-in tokenizer: one token per word)
    assert call_budget(ToolCalls((WEATHER,), "required", parallel=False), encode) is None
    assert call_budget(ToolCalls((WEATHER,), "get_weather", parallel=True), encode) is None
    budget = call_budget(ToolCalls((WEATHER, TIME), "auto", parallel=True), encode)
    # the shortest call: <tool_call>\n{"name": "get_time", "arguments": {"city": ""}}\n</tool_call>
    assert budget == CallBudget("</tool_call>", 7 + 1)  # seven words and the separator
    calls = CallTracker(budget)
    assert not calls.ends_answer("prose, no call yet", 3, 0)
    assert calls.ends_answer("…}}\n</tool_call>", 20, 7)  # the shortest call would not fit
    assert not CallTracker(budget).ends_answer("…}}\n</tool_call>", 5, 8)
    # the longest call so far counts too: a 20-token call was written, 12 tokens are left
    calls = CallTracker(budget)
    assert calls.ends_answer("<tool_call>…</tool_call>", 20, 12)
    # the separator after the same call end is not another call: the longest stays 20 tokens
    assert not calls.ends_answer("<tool_call>…</tool_call>\n", 21, 25) and calls.longest == 20


def test_parallel_calls_end_before_the_budget_runs_out(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    messages = [{"role": "user", "content": "What is the weather in Paris and the time in Tokyo?"}]
    prompt = engine.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                  return_dict=False)
    spec = ToolCalls((WEATHER, TIME), "required", parallel=True)
    for max_tokens in (40, 64, 100):  # the 135M model repeats calls until it is stopped
        ids = engine.add_request(prompt, SamplingParams(max_tokens=max_tokens, temperature=0, grammar=spec))
        text, final = "", None
        while engine.has_unfinished():
            for out in engine.step():
                text += out.new_text
                final = out if out.finished else final
        assert final is not None and final.request_id == ids
        assert final.finish_reason == "stop", (max_tokens, text)
        _, calls = parse_tool_calls(text)
        assert calls and all(isinstance(json.loads(args), dict) for _, args in calls)
