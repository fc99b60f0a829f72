"""Chat rendering (the model's own template; hermes tool prompt where the template ignores tools) and
engine outputs -> OpenAI responses, streamed and whole, which must agree."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from sluicegate.engine.outputs import RequestOutput
from sluicegate.gateway.chat_format import ChatRenderer
from sluicegate.gateway.chat_output import ChatContext, ChoiceStreamer, build_completion
from sluicegate.gateway.protocol import ChatCompletionRequest
from sluicegate.grammars.tool_formats import parse_tool_calls
from sluicegate.grammars.tool_formats.hermes import render_tool_call

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]

# A Qwen2.5-style template that renders tools and structured tool calls itself.
NATIVE_TEMPLATE = (
    "{%- if tools %}<|im_start|>system\n{{ messages[0].content if messages[0].role == 'system' else '' }}\n<tools>"
    "{% for t in tools %}\n{{ t | tojson }}{% endfor %}\n</tools><|im_end|>\n{% endif %}"
    "{% for m in messages %}{% if m.role == 'system' and tools %}"
    "{% elif m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n{% for c in m.tool_calls %}"
    "<tool_call>\n{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}\n"
    "</tool_call>{% endfor %}<|im_end|>\n"
    "{% elif m.role == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m.content }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from sluicegate.engine.models.tokenizer import load_tokenizer

    return load_tokenizer()  # the default model's (SmolLM2: its template ignores tools)


def _req(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = TOOLS) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages, "tools": tools})


def _parts(messages: list[dict[str, Any]]) -> tuple[Any, Any]:
    req = _req(messages)
    return req.messages, req.tools


def _conversation(turns: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "Weather in Paris?"}]
    for i in range(turns):
        args = json.dumps({"city": f"City{i}"})
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": args}}]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{i}", "content": json.dumps({"temp": i})})
    return msgs


def test_smollm2_template_gets_the_hermes_prompt(tokenizer: Any) -> None:
    renderer = ChatRenderer(tokenizer, tokenizer.chat_template)
    assert not renderer.renders_tools
    text = renderer.render(*_parts(_conversation(1)))
    system = text.split("<|im_end|>")[0]
    assert "Be brief." in system and "<tools>" in system and '"name": "get_weather"' in system
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "City0"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\n{\"temp\": 0}\n</tool_response><|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert "None" not in text  # a null assistant content is not rendered as the string "None"
    plain = renderer.render(_req([{"role": "user", "content": "hi"}], None).messages, None)
    assert "<tools>" not in plain


def test_each_turn_extends_the_previous_prompt(tokenizer: Any) -> None:
    """Rendering is a pure function: turn k's prompt is a prefix of turn k+1's, text and tokens."""
    renderer = ChatRenderer(tokenizer, tokenizer.chat_template)
    prompts = [renderer.render(*_parts(_conversation(k))) for k in range(4)]
    for a, b in zip(prompts, prompts[1:], strict=False):
        assert b.startswith(a)
        ids_a, ids_b = renderer.encode(a), renderer.encode(b)
        assert ids_b[: len(ids_a) - 2] == ids_a[:-2]  # all but the boundary tokens are shared


def test_rendered_call_is_what_the_grammar_writes() -> None:
    text = render_tool_call("get_weather", '{"city": "Paris"}')
    content, calls = parse_tool_calls(text)
    assert content == "" and calls == [("get_weather", '{"city": "Paris"}')]


def test_native_template_gets_tools_and_structured_calls(tokenizer: Any) -> None:
    renderer = ChatRenderer(tokenizer, NATIVE_TEMPLATE)
    assert renderer.renders_tools
    text = renderer.render(*_parts(_conversation(1)))
    assert text.count("<tools>") == 1 and "# Tools" not in text  # no second, injected prompt
    assert '"arguments": {"city": "City0"}' in text  # arguments handed over as an object
    assert "<tool_response>\n{\"temp\": 0}\n</tool_response>" in text


def _outs(text: str, pieces: int, reason: str = "stop") -> list[RequestOutput]:
    cuts = sorted(random.Random(pieces).sample(range(1, len(text)), pieces - 1))
    parts = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    outs = [RequestOutput("r", [1], p, num_prompt_tokens=10, num_output_tokens=k + 1) for k, p in enumerate(parts)]
    outs[-1].finished, outs[-1].finish_reason, outs[-1].num_cached_tokens = True, reason, 4
    return outs


@pytest.mark.parametrize("pieces", [1, 3, 17, 60])
def test_streamed_tool_calls_agree_with_whole(pieces: int) -> None:
    calls_text = "\n".join(render_tool_call("get_weather", json.dumps({"city": c})) for c in ("Paris", "Rome"))
    ctx = ChatContext(id="x", created=0, model="m", parse_tools=True, include_usage=True, logprobs=False)
    outs = _outs(calls_text, pieces)
    whole = build_completion(ctx, [outs])
    message = whole.choices[0].message
    assert whole.choices[0].finish_reason == "tool_calls" and message.content is None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]
    assert whole.usage.prompt_tokens == 10 and whole.usage.prompt_tokens_details.cached_tokens == 4

    streamer = ChoiceStreamer(ctx, 0)
    choices = [c for out in outs for c in streamer.deltas(out)]
    assert choices[0].delta.role == "assistant"
    assert choices[-1].finish_reason == "tool_calls"
    streamed: dict[int, list[str]] = {}
    for ch in choices:
        for call in ch.delta.tool_calls or []:
            if call.index not in streamed:
                assert call.id and call.type == "function" and call.function and call.function.name == "get_weather"
                streamed[call.index] = []
            streamed[call.index].append(call.function.arguments or "" if call.function else "")
    assert sorted(streamed) == [0, 1]
    assert ["".join(v) for _, v in sorted(streamed.items())] == [c.function.arguments for c in message.tool_calls]


def test_plain_text_stream_and_length() -> None:
    ctx = ChatContext(id="x", created=0, model="m", parse_tools=False, include_usage=False, logprobs=False)
    outs = _outs("Hello <tool_call> world", 5, reason="length")
    whole = build_completion(ctx, [outs])
    assert whole.choices[0].message.content == "Hello <tool_call> world"
    assert whole.choices[0].finish_reason == "length"
    streamer = ChoiceStreamer(ctx, 0)
    text = "".join(c.delta.content or "" for out in outs for c in streamer.deltas(out))
    assert text == "Hello <tool_call> world"
