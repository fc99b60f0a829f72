"""What one format does that the shared table (test_tool_formats.py) does not reach: harmony's
reasoning channel, Qwen3-Coder's raw values read by schema, pythonic literals, the other spellings
the parsers accept from models, and the grammars of schemas only one format writes itself."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate.grammars import GrammarError, ToolCalls, ToolSpec, allocate_bitmask, get_backend
from sluicegate.grammars.conformance import walk
from sluicegate.grammars.tool_formats import get_format, parse_tool_calls
from sluicegate.grammars.tool_formats.qwen3_coder import QWEN3_CODER
from sluicegate.grammars.tool_formats.stream_util import ValueScanner, partial_marker_len
from tests.grammars.tool_format_cases import LAYOUTS, TOOLS, WEATHER, format_tokenizer


@pytest.fixture(scope="module")
def accepts() -> Any:
    tokenizer = format_tokenizer()
    backend = get_backend("llguidance", tokenizer)
    mask = allocate_bitmask(1, backend.vocab_size)

    def check(fmt: str, tools: tuple[ToolSpec, ...], choice: str, text: str, plain: str = "") -> bool:
        """`plain`: a part of `text` whose special-token text is spelled with ordinary tokens."""
        grammar = backend.compile(ToolCalls(tools, choice, True, fmt))
        head, _, tail = text.partition(plain) if plain else (text, "", "")
        ids = [*tokenizer.encode(head, add_special_tokens=False),
               *tokenizer.encode(plain, add_special_tokens=False, split_special_tokens=True),
               *tokenizer.encode(tail, add_special_tokens=False)]
        return bool(walk(grammar, ids, int(tokenizer.eos_token_id), mask).accepted)

    return check


CALL = '<|channel|>commentary to=functions.now <|constrain|>json<|message|>{}<|call|>'
THOUGHT = "<|channel|>analysis<|message|>The user wants the time.<|end|><|start|>assistant"


def test_harmony_reasoning_comes_first_and_is_not_content(accepts: Any) -> None:
    assert accepts("harmony", TOOLS, "required", THOUGHT + CALL)
    assert accepts("harmony", TOOLS, "auto", THOUGHT + "<|channel|>final<|message|>It is noon.")
    assert not accepts("harmony", TOOLS, "required", THOUGHT)  # reasoning alone is no call
    assert parse_tool_calls(THOUGHT + CALL, "harmony") == ("", [("now", "{}")])
    assert parse_tool_calls(THOUGHT + "<|channel|>final<|message|>It is noon.<|return|>", "harmony") == (
        "It is noon.", [])


def test_marker_text_inside_arguments_and_prose_is_never_a_marker(accepts: Any) -> None:
    """Output is decoded with special tokens kept, so a marker's text inside a JSON string must
    not end a call, and prose may not spell a marker (the parser could not tell it from one)."""
    tricky = {"city": 'a "<|call|>" b <|end|> [TOOL_CALLS] <｜tool▁call▁end｜> ]} \\'}
    for fmt in LAYOUTS:
        text = LAYOUTS[fmt].calls([("get_weather", tricky)])
        escaped = json.dumps(tricky["city"], ensure_ascii=False)[1:-1]  # the string's text, as ordinary tokens
        assert accepts(fmt, TOOLS, "required", text, tricky["city"] if fmt == "qwen3_coder" else escaped), fmt
        assert [json.loads(a) for _, a in parse_tool_calls(text, fmt)[1]] == [tricky], fmt
    assert not accepts("harmony", TOOLS, "auto", "<|channel|>final<|message|>so <|end|> spelled out")


def test_harmony_parser_reads_the_recipient_in_the_role_too() -> None:
    text = ' to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Oslo"}<|call|>'
    assert parse_tool_calls(text, "harmony") == ("", [("get_weather", '{"city": "Oslo"}')])
    assert parse_tool_calls("plain words, no header", "harmony") == ("plain words, no header", [])
    assert parse_tool_calls("<|start|>assistant<|chan", "harmony") == ("", [])  # a header cut short


def test_qwen3_coder_string_values_are_raw_multiline_text(accepts: Any) -> None:
    text = ("<tool_call>\n<function=get_weather>\n<parameter=city>\nSan José\n<b>\"Costa Rica\"</b>\n</parameter>\n"
            "</function>\n</tool_call>")
    assert accepts("qwen3_coder", TOOLS, "required", text)
    assert parse_tool_calls(text, "qwen3_coder") == (
        "", [("get_weather", json.dumps({"city": 'San José\n<b>"Costa Rica"</b>'}, ensure_ascii=False))])


def test_qwen3_coder_value_ends_where_the_grammar_ends_it(accepts: Any) -> None:
    value = "\nsee </parameter> here\n</parameter>x"  # a bare close tag inside is text
    text = f"<tool_call>\n<function=get_weather>\n<parameter=city>\n{value}\n</parameter>\n</function>\n</tool_call>"
    assert accepts("qwen3_coder", TOOLS, "required", text)
    for chunk in (1, len(text)):
        parser = QWEN3_CODER.parser()
        for start in range(0, len(text), chunk):
            parser.feed(text[start : start + chunk])
        parser.finish()
        assert parser.calls == [("get_weather", json.dumps({"city": value}))]
    loose = "<tool_call><function=now><parameter=a>1</parameter><parameter=b>x</parameter></function></tool_call>"
    assert parse_tool_calls(loose, "qwen3_coder") == ("", [("now", '{"a": 1, "b": "x"}')])


def test_qwen3_coder_reads_values_by_schema_when_it_has_the_tools() -> None:
    zip_tool = ToolSpec.of("lookup", {"type": "object", "properties": {
        "zip": {"type": "string"}, "count": {"type": "integer"}, "flag": {"type": "boolean"}}})
    text = ("<tool_call>\n<function=lookup>\n<parameter=zip>\n02139\n</parameter>\n<parameter=count>\n12345\n"
            "</parameter>\n<parameter=flag>\nTrue\n</parameter>\n</function>\n</tool_call>")
    parser = QWEN3_CODER.parser((zip_tool,))
    parser.feed(text)
    parser.finish()
    assert json.loads(parser.calls[0][1]) == {"zip": "02139", "count": 12345, "flag": True}
    text = text.replace("02139", "12345")  # without the schema a number-like string reads as a number
    assert json.loads(parse_tool_calls(text, "qwen3_coder")[1][0][1])["zip"] == 12345
    parser = QWEN3_CODER.parser((zip_tool,))
    parser.feed(text)
    parser.finish()
    assert json.loads(parser.calls[0][1])["zip"] == "12345"


def test_pythonic_literals_become_json(accepts: Any) -> None:
    any_tool = ToolSpec.of("store", {"type": "object", "properties": {
        "value": {}, "tags": {"type": "array", "items": {"type": ["string", "null"]}}}, "required": ["value"]})
    text = '[store(value={"a": [1, 2.5, None, True]}, tags=["x", None])]'
    assert accepts("pythonic", (any_tool,), "required", text)
    assert not accepts("pythonic", (any_tool,), "required", text.replace("None]", "null]"))  # Python, not JSON
    assert parse_tool_calls(text, "pythonic") == (
        "", [("store", '{"value": {"a": [1, 2.5, null, true]}, "tags": ["x", null]}')])
    # what models write without a grammar: single quotes, spaces
    assert parse_tool_calls("[store( value = 'it\\'s, (x)' , tags=[] )]", "pythonic")[1] == [
        ("store", '{"value": "it\'s, (x)", "tags": []}')]


def test_pythonic_open_schemas_take_further_keyword_arguments(accepts: Any) -> None:
    open_tool = ToolSpec.of("log", {"type": "object"})
    some = ToolSpec.of("tag", {"type": "object", "properties": {"a": {"type": "integer"}},
                               "additionalProperties": {"type": "boolean"}})
    assert accepts("pythonic", (open_tool,), "required", '[log(x=1, y=None, z={"k": [True]})]')
    assert accepts("pythonic", (open_tool,), "required", "[log()]")
    assert accepts("pythonic", (some,), "required", "[tag(a=1, b=True)]")
    assert accepts("pythonic", (some,), "required", "[tag(b=False)]")
    assert not accepts("pythonic", (some,), "required", "[tag(, b=False)]")
    assert not accepts("pythonic", (some,), "required", "[tag(a=1, b=2)]")  # extras are booleans
    assert not accepts("pythonic", (WEATHER,), "required", '[get_weather(city="x", other=1)]')  # closed


def test_pythonic_refuses_recursive_schemas() -> None:
    node = ToolSpec.of("tree", {"$defs": {"n": {"type": "object", "properties": {
        "leaf": {"type": "boolean"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}}},
        "type": "object", "properties": {"root": {"$ref": "#/$defs/n"}}})
    with pytest.raises(GrammarError, match="recursive"):
        get_format("pythonic").lark(ToolCalls((node,), "required"), [json.loads(node.parameters_json)])


@pytest.mark.parametrize(("fmt", "text"), [
    ("llama3_json", '{"name": "now", "arguments": {}}\n{"name": "now", "parameters": {}}'),  # newline, other key
    ("mistral", '[TOOL_CALLS][{"name": "now", "arguments": {}, "id": "a1b2c3d4e"}, {"arguments": {}, "name": "now"}]'),
    ("mistral", '[TOOL_CALLS] {"name": "now", "arguments": {}}[TOOL_CALLS][{"name": "now", "arguments": {}}]'),
    ("pythonic", "<|python_start|>[now(), now()]<|python_end|>"),  # Llama 4's wrapping
    ("mistral_args", "[TOOL_CALLS]now[CALL_ID]a1b2c3d4e[ARGS]{}[TOOL_CALLS]now[ARGS]{}"),
    ("phi4_mini", '<|tool_call|>{"name": "now", "arguments": {}}<|/tool_call|><|tool_call|>[{"name": "now", "arguments": {}}]<|/tool_call|>'),
])
def test_parsers_take_what_models_write_without_a_grammar(fmt: str, text: str) -> None:
    assert parse_tool_calls(text, fmt) == ("", [("now", "{}"), ("now", "{}")])


def test_value_scanner_and_marker_holdback() -> None:
    scanner = ValueScanner()
    assert scanner.feed('{"a": "}\\"", "b": [1, {') is None
    assert scanner.feed("}]} tail") == 3
    assert ValueScanner(quotes="'\"", delimiters=",)").feed("-1.5e3, x") == 6
    assert partial_marker_len("text <|pyth", ["<|python_tag|>"]) == 6
    assert partial_marker_len("text <|python_tag|", ["<|python_tag|>", "<|x|>"]) == 13
    assert partial_marker_len("text", ["<|python_tag|>"]) == 0


def test_refs_to_defs_hold_in_the_formats_that_write_their_own_grammar(accepts: Any) -> None:
    tool = ToolSpec.of("paint", {"$defs": {"color": {"enum": ["red", "blue"]}, "on": {"type": "boolean"}},
                                 "type": "object", "properties": {"color": {"$ref": "#/$defs/color"},
                                                                  "wet": {"$ref": "#/$defs/on"}},
                                 "required": ["color", "wet"]})
    good = {"pythonic": '[paint(color="red", wet=False)]',
            "qwen3_coder": "<tool_call>\n<function=paint>\n<parameter=color>\nred\n</parameter>\n"
                           "<parameter=wet>\nFalse\n</parameter>\n</function>\n</tool_call>"}
    for fmt, text in good.items():
        assert accepts(fmt, (tool,), "required", text)
        assert not accepts(fmt, (tool,), "required", text.replace("red", "green"))
        assert json.loads(parse_tool_calls(text, fmt)[1][0][1]) == {"color": "red", "wet": False}


def test_schema_with_a_string_enum_and_required_keys_holds_in_each_format(accepts: Any) -> None:
    for fmt, text in [
        ("pythonic", '[get_weather(city="x", units="K")]'),
        ("qwen3_coder", "<tool_call>\n<function=get_weather>\n<parameter=city>\nx\n</parameter>\n"
                        "<parameter=units>\nK\n</parameter>\n</function>\n</tool_call>"),
    ]:
        assert not accepts(fmt, (WEATHER,), "required", text)
        assert accepts(fmt, (WEATHER,), "required", text.replace("K", "C"))
