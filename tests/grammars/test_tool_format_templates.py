"""Tool formats meet chat templates: each family's fixture template renders tools, calls and results
in the layout its grammar makes the model write; the format is detected from the template (or set
by --tool-call-format); templates that ignore tools get the format's own prompt and call text; and
the special-token markers survive detokenization for the parser."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate.engine.detokenizer import IncrementalDetokenizer
from sluicegate.gateway.chat_format import ChatRenderer
from sluicegate.gateway.cli import parse_args, settings_from_args
from sluicegate.gateway.protocol import ChatCompletionRequest
from sluicegate.gateway.sampling import chat_grammar, chat_params
from sluicegate.grammars.tool_formats import FORMATS, format_for_template, get_format, parse_tool_calls
from tests.grammars.tool_format_cases import LAYOUTS, NESTED, NO_ARGS, ONE, Call, format_tokenizer, template

NAMES = list(LAYOUTS)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return format_tokenizer()


def _tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"{name} tool", "parameters": parameters}}


TOOLS = [_tool("get_weather", {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}}, "required": ["city"]}),
    _tool("now", {"type": "object", "properties": {}}),
    _tool("plan_route", {"type": "object", "properties": {"stops": {"type": "array"}}})]


def _conversation(calls: list[Call]) -> list[dict[str, Any]]:
    """system, user, an assistant turn with `calls`, their results, and a follow-up question."""
    tool_calls = [{"id": f"call_{i}", "type": "function",
                   "function": {"name": n, "arguments": json.dumps(a, ensure_ascii=False)}}
                  for i, (n, a) in enumerate(calls)]
    results = [{"role": "tool", "tool_call_id": f"call_{i}", "content": json.dumps({"result": i})}
               for i in range(len(calls))]
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Zürich?"},
            {"role": "assistant", "content": None, "tool_calls": tool_calls}, *results,
            {"role": "user", "content": "And tomorrow?"}]


def _render(renderer: ChatRenderer, messages: list[dict[str, Any]]) -> str:
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": messages, "tools": TOOLS})
    return renderer.render(req.messages, req.tools)


@pytest.mark.parametrize("fmt", NAMES)
def test_format_is_detected_from_its_template(tokenizer: Any, fmt: str) -> None:
    assert format_for_template(template(fmt)).name == fmt
    assert ChatRenderer(tokenizer, template(fmt)).tool_format.name == fmt


def test_unknown_template_falls_back_to_hermes(tokenizer: Any) -> None:
    assert format_for_template(tokenizer.chat_template).name == "hermes"  # SmolLM2's: no tool syntax
    assert format_for_template(None).name == "hermes"


@pytest.mark.parametrize(("tokens", "fmt"), [
    (["[INST]", "[TOOL_CALLS]"], "mistral"), (["[TOOL_CALLS]", "[ARGS]"], "mistral_args"),
    (["<|python_tag|>", "<|eot_id|>"], "llama3_json"), (["<|tool_call|>", "<|/tool_call|>"], "phi4_mini"),
    (["<|channel|>", "<|message|>", "<|call|>"], "harmony"), (["<|im_start|>"], "hermes"),
])
def test_a_template_without_tool_syntax_leaves_the_choice_to_the_tokens(tokens: list[str], fmt: str) -> None:
    chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    assert format_for_template(chatml, tokens).name == fmt
    assert format_for_template(template("qwen3_coder"), tokens).name == "qwen3_coder"  # the template first


@pytest.mark.parametrize("fmt", NAMES)
def test_tool_call_format_flag_overrides_detection(tokenizer: Any, fmt: str) -> None:
    settings = settings_from_args(parse_args(["serve", "--tool-call-format", fmt]))
    assert settings.explicit_tool_format == fmt
    other = "qwen3_coder" if fmt != "qwen3_coder" else "llama3_json"
    assert ChatRenderer(tokenizer, template(other), settings.explicit_tool_format).tool_format.name == fmt
    assert settings_from_args(parse_args(["serve"])).explicit_tool_format is None  # auto: detect


def test_flag_choices_are_the_formats() -> None:
    with pytest.raises(SystemExit):
        parse_args(["serve", "--tool-call-format", "nonesuch"])
    assert set(FORMATS) >= {"hermes", "llama3_json", "pythonic", "mistral", "mistral_args", "qwen3_coder"}


@pytest.mark.parametrize("fmt", NAMES)
def test_template_renders_tools_calls_and_results_as_the_grammar_writes_them(tokenizer: Any, fmt: str) -> None:
    renderer = ChatRenderer(tokenizer, template(fmt))
    assert renderer.renders_tools
    assert renderer.renders_calls is (fmt != "granite")  # Granite's drops calls: they go in as text
    calls = [ONE, NO_ARGS]
    text = _render(renderer, _conversation(calls))
    assert all(name in text for name in ("get_weather", "plan_route", "now tool"))
    assert LAYOUTS[fmt].calls(calls) in text  # the template's call layout is the grammar's
    for i in range(len(calls)):  # each result, as it is or as a JSON string (Mistral's {"content": ...})
        result = json.dumps({"result": i})
        assert result in text or json.dumps(result)[1:-1] in text
    assert "And tomorrow?" in text


def test_mistral_templates_get_the_nine_character_call_ids_they_demand(tokenizer: Any) -> None:
    renderer = ChatRenderer(tokenizer, template("mistral"))
    ids = [renderer._call_id(i) for i in ("call_0", "call_Ab3dEf9hIjKlMnOpQrStUvWx", "x-1")]
    assert all(len(i) == 9 and i.isalnum() for i in ids) and ids[1] == "jKlMnOpQrStUvWx"[-9:]
    assert ids == [renderer._call_id(i) for i in ("call_0", "call_Ab3dEf9hIjKlMnOpQrStUvWx", "x-1")]  # stable
    assert ids[0] != renderer._call_id("call_1")
    assert ChatRenderer(tokenizer, template("hermes"))._call_id("call_0") == "call_0"  # others as sent


@pytest.mark.parametrize("fmt", NAMES)
def test_template_without_tools_gets_the_formats_prompt_and_call_text(tokenizer: Any, fmt: str) -> None:
    renderer = ChatRenderer(tokenizer, tokenizer.chat_template, fmt)  # SmolLM2's ChatML ignores tools
    assert not renderer.renders_tools
    calls = [ONE, NESTED]
    text = _render(renderer, _conversation(calls))
    system = text.split("<|im_end|>")[0]
    assert "Be brief." in system
    assert "get_weather" in system and "plan_route" in system  # the format's tool prompt
    assert LAYOUTS[fmt].calls(calls) in text
    for turns in (2, 3, 3 + len(calls)):  # an earlier turn's prompt is a prefix of a later one's
        shorter = _render(renderer, _conversation(calls)[:turns])
        assert text.startswith(shorter.removesuffix("<|im_start|>assistant\n"))
    content, parsed = parse_tool_calls(get_format(fmt).render_assistant_content("", [
        (n, json.dumps(a, ensure_ascii=False)) for n, a in calls]), fmt)
    assert content == "" and [(n, json.loads(a)) for n, a in parsed] == calls


@pytest.mark.parametrize("fmt", [n for n in NAMES if LAYOUTS[n].specials])
def test_special_markers_survive_detokenization(tokenizer: Any, fmt: str) -> None:
    """The engine decodes tool-grammar output with its special tokens kept (gateway/sampling.py):
    token by token, the parser gets the markers and the calls."""
    req = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                                                "tools": TOOLS, "tool_choice": "required"})
    params = chat_params(req, chat_grammar(req, fmt), 0)
    assert params.skip_special_tokens is False
    text = LAYOUTS[fmt].calls([ONE, NO_ARGS])
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=params.skip_special_tokens)
    parser = get_format(fmt).parser()
    for token_id in tokenizer.encode(text, add_special_tokens=False):
        detok.add(token_id)
        parser.feed(detok.take_delta(final=False))
    parser.feed(detok.take_delta(final=True))
    parser.finish()
    assert [(n, json.loads(a)) for n, a in parser.calls] == [ONE, NO_ARGS]
    plain = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert chat_params(plain, None, 0).skip_special_tokens is True  # other requests: as before
