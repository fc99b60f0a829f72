"""The request fields vLLM clients send, through the official client's extra_body against the real
server: guided_* and structured_outputs hold the output, chat_template_kwargs reach the template,
top_k / min_p / repetition_penalty are accepted, and an unknown field is a 400 naming it."""

from __future__ import annotations

import json
import re
from typing import Any

import openai
import pytest

pytestmark = pytest.mark.slow

HI = [{"role": "user", "content": "Pick a colour and describe it."}]
SCHEMA = {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"],
          "additionalProperties": False}


def _chat(client: Any, model: str, extra: dict[str, Any], **kwargs: Any) -> str:
    kwargs = {"max_tokens": 24, "temperature": 0, **kwargs}
    out = client.chat.completions.create(model=model, messages=HI, extra_body=extra, **kwargs)
    return str(out.choices[0].message.content)


@pytest.mark.parametrize("extra", [{"guided_json": SCHEMA}, {"guided_json": json.dumps(SCHEMA)},
                                   {"structured_outputs": {"json": SCHEMA}}])
def test_json_schema_fields(client: Any, model_name: str, extra: dict[str, Any]) -> None:
    value = json.loads(_chat(client, model_name, extra, max_completion_tokens=40))
    assert set(value) == {"colour"} and isinstance(value["colour"], str)


@pytest.mark.parametrize("key", ["guided_choice", "structured_outputs"])
def test_choice(client: Any, model_name: str, key: str) -> None:
    options = ["red", "green", "blue"]
    extra = {key: options} if key == "guided_choice" else {key: {"choice": options}}
    assert _chat(client, model_name, extra) in options


@pytest.mark.parametrize("key", ["guided_regex", "structured_outputs"])
def test_regex(client: Any, model_name: str, key: str) -> None:
    pattern = r"#[0-9a-f]{6}"
    extra = {key: pattern} if key == "guided_regex" else {key: {"regex": pattern}}
    assert re.fullmatch(pattern, _chat(client, model_name, extra))


@pytest.mark.parametrize("key", ["guided_grammar", "structured_outputs"])
def test_lark_grammar(client: Any, model_name: str, key: str) -> None:
    grammar = 'start: "colour: " NAME\nNAME: /[a-z]{3,8}/\n'
    extra = {key: grammar} if key == "guided_grammar" else {key: {"grammar": grammar}}
    assert re.fullmatch(r"colour: [a-z]{3,8}", _chat(client, model_name, extra))


def test_guided_fields_on_completions(client: Any, model_name: str) -> None:
    out = client.completions.create(model=model_name, prompt="The sky is", max_tokens=8, temperature=0,
                                    extra_body={"guided_choice": ["blue", "grey"]})
    assert out.choices[0].text in ("blue", "grey")


def test_sampling_extras_are_accepted(client: Any, model_name: str) -> None:
    text = _chat(client, model_name, {"top_k": 5, "min_p": 0.05, "repetition_penalty": 1.2}, temperature=0.7, seed=1)
    assert text


def test_chat_template_kwargs_reach_the_template(client: Any, model_name: str) -> None:
    base = client.chat.completions.create(model=model_name, messages=HI, max_tokens=1)
    extra = client.chat.completions.create(model=model_name, messages=HI, max_tokens=1,
                                           extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert base.usage is not None and extra.usage is not None  # an unused variable leaves the prompt as it is
    assert extra.usage.prompt_tokens == base.usage.prompt_tokens
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model=model_name, messages=HI, max_tokens=1,
                                       extra_body={"chat_template_kwargs": {"tools": []}})
    assert exc.value.body["param"] == "chat_template_kwargs"  # type: ignore[index]


def test_two_constraints_or_an_unknown_field_are_400(client: Any, model_name: str) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        _chat(client, model_name, {"guided_regex": "a+", "guided_choice": ["a"]})
    assert "guided_regex, guided_choice" in exc.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError):
        _chat(client, model_name, {"guided_json": SCHEMA}, response_format={"type": "json_object"})
    with pytest.raises(openai.BadRequestError) as exc:
        _chat(client, model_name, {"guided_decoding_backendx": "x"})
    body: Any = exc.value.body
    assert body["param"] == "guided_decoding_backendx" and "docs/api.md" in body["message"]
    with pytest.raises(openai.BadRequestError):  # inside structured_outputs too
        _chat(client, model_name, {"structured_outputs": {"jsn": SCHEMA}})
    with pytest.raises(openai.BadRequestError):  # not JSON
        _chat(client, model_name, {"guided_json": "{not json"})
