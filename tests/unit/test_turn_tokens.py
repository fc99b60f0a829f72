"""gateway/chat_format/turn_tokens.py: a remembered answer's own ids replace its re-tokenized text in
a later prompt, the ids always spell the same text, and answers that do not appear are left alone."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.gateway.chat_format import ChatRenderer
from sluicegate.gateway.chat_format.turn_tokens import TurnTokens, spelling_ids
from sluicegate.gateway.protocol import ChatCompletionRequest

CALL = '<tool_call>\n{"name": "find_restaurants", "arguments": {"city": "Paris"}}\n</tool_call>'
TOOLS = [{"type": "function", "function": {"name": "find_restaurants", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from sluicegate.engine.models.tokenizer import load_tokenizer

    return load_tokenizer()  # the default model's (SmolLM2: hermes calls as text)


def encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def spelled_unusually(tokenizer: Any, text: str) -> list[int]:
    """text's ids with `find` spelled as `f` + `ind`, as a grammar lets a model write it."""
    head, tail = text.split("find", 1)
    return encode(tokenizer, head) + encode(tokenizer, "f") + encode(tokenizer, "ind" + tail)


def test_spelling_ids_drop_a_final_stop_token_only_when_the_text_lacks_it(tokenizer: Any) -> None:
    def decode(ids: list[int]) -> str:
        return str(tokenizer.decode(ids, skip_special_tokens=False))

    ids = encode(tokenizer, "Hello there")
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert spelling_ids("Hello there", ids, decode) == ids
    assert spelling_ids("Hello there", [*ids, eos], decode) == ids
    assert spelling_ids("Hello", ids, decode) == ids[:1]  # a stop string that was a whole token
    assert spelling_ids("Hel", ids, decode) is None  # one that cut a token: not remembered


def test_the_next_prompt_carries_the_answer_as_generated(tokenizer: Any) -> None:
    renderer = ChatRenderer(tokenizer, tokenizer.chat_template)
    first = [{"role": "system", "content": "You plan trips."}, {"role": "user", "content": "Eat in Paris?"}]
    opening = ChatCompletionRequest(model="m", messages=first, tools=TOOLS)
    prompt_text = renderer.render(opening.messages, opening.tools)
    generated = spelled_unusually(tokenizer, CALL)
    assert generated != encode(tokenizer, CALL)  # not the tokenizer's own spelling
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    renderer.turns.remember(CALL, [*generated, eos], ["call_1"], None)
    second = [*first, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "find_restaurants", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"items": 3}'}]
    request = ChatCompletionRequest(model="m", messages=second, tools=TOOLS)
    text = renderer.render(request.messages, request.tools)
    ids = renderer.prompt_ids(text, request.messages)
    previous = renderer.encode(prompt_text)
    assert ids[:len(previous) + len(generated)] == previous + generated  # the cache hit runs through the answer
    assert tokenizer.decode(ids, skip_special_tokens=False) == text  # the same text, spelled as generated
    unknown = ChatCompletionRequest(model="m", messages=[*first, {**second[2], "tool_calls": [
        {**second[2]["tool_calls"][0], "id": "call_2"}]}], tools=TOOLS)
    assert renderer.turns.encode(text, unknown.messages, renderer.encode) == renderer.encode(text)


def test_answers_without_calls_are_keyed_by_their_content_and_capacity_is_bounded(tokenizer: Any) -> None:
    turns = TurnTokens(tokenizer, capacity=2)
    for i in range(3):
        answer = f"Answer number {i}."
        turns.remember(answer, encode(tokenizer, answer), [], answer)
    assert len(turns) == 2
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "q"},
                                                         {"role": "assistant", "content": "Answer number 0."}])
    text = "q Answer number 0. more"
    assert turns.encode(text, request.messages, lambda s: encode(tokenizer, s)) == encode(tokenizer, text)  # evicted
    kept = request.model_copy(update={"messages": [request.messages[0], request.messages[1].model_copy(
        update={"content": "Answer number 2."})]})
    spliced = turns.encode("q Answer number 2. more", kept.messages, lambda s: encode(tokenizer, s))
    assert spliced == encode(tokenizer, "q ") + encode(tokenizer, "Answer number 2.") + encode(tokenizer, " more")
