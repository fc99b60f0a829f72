"""Tool-call grammars in every tool_choice mode, and the hermes parsers (batch and streaming)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate.grammars import (
    GrammarError,
    ToolCalls,
    ToolSpec,
    allocate_bitmask,
    parse_tool_calls,
    tool_calls_spec,
)
from sluicegate.grammars.conformance import walk
from sluicegate.grammars.tool_formats import ContentDelta, ToolCallArgs, ToolCallEnd, ToolCallStart
from sluicegate.grammars.tool_formats.hermes import HermesParser as ToolCallStreamParser

WEATHER = ToolSpec.of(
    "get_weather",
    {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
            "units": {"enum": ["C", "F"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
)
NOW = ToolSpec.of("now", None)  # no parameters
ROUTE = ToolSpec.of(
    "plan_route",
    {
        "type": "object",
        "properties": {
            "stops": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "lat": {"type": "number"}},
                    "required": ["name", "lat"],
                    "additionalProperties": False,
                },
                "minItems": 1,
            }
        },
        "required": ["stops"],
        "additionalProperties": False,
    },
)
OPEN = ToolSpec.of("open_schema", {"type": "object", "properties": {}})  # as LangChain sends a no-argument tool
KEPT_OPEN = ToolSpec.of("kept_open", {"type": "object", "properties": {"x": {"type": "integer"}},
                                      "additionalProperties": True})
TOOLS = (WEATHER, NOW, ROUTE, OPEN, KEPT_OPEN)


def call(name: str, args: dict[str, Any]) -> str:
    body = json.dumps({"name": name, "arguments": args}, ensure_ascii=False)
    return f"<tool_call>\n{body}\n</tool_call>"


def bare(name: str, args: dict[str, Any]) -> str:
    return json.dumps({"name": name, "arguments": args}, ensure_ascii=False)


BARE = bare("get_weather", {"city": "Paris"})
ONE = call("get_weather", {"city": "Zürich 東京 🌧", "days": 3})
NO_ARGS = call("now", {})
NESTED = call("plan_route", {"stops": [{"name": "A", "lat": 1.5}, {"name": "Ü", "lat": -2}]})
TWO = ONE + "\n" + NO_ARGS
PROSE = "Let me look that up for you."


def accepts(backend: Any, tokenizer: Any, vocab_size: int, spec: ToolCalls, text: str) -> bool:
    grammar = backend.compile(spec)
    ids = tokenizer.encode(text, add_special_tokens=False)
    return walk(grammar, ids, int(tokenizer.eos_token_id), allocate_bitmask(1, vocab_size)).accepted


CASES = [
    # (tool_choice, parallel, text, accepted)
    ("required", True, ONE, True),
    ("required", True, NO_ARGS, True),
    ("required", True, NESTED, True),
    ("required", True, TWO, True),
    ("required", False, ONE, True),
    ("required", False, TWO, False),  # one call only when not parallel
    ("required", True, PROSE, False),
    ("required", True, PROSE + "\n" + ONE, False),  # nothing but calls
    ("required", True, ONE + "\nbye", False),
    ("required", True, call("get_weather", {"city": "x", "days": 9}), False),  # maximum 7
    ("required", True, call("get_weather", {"days": 2}), False),  # city is required
    ("required", True, call("now", {"x": 1}), False),  # no parameters means {}
    ("required", True, call("unknown", {}), False),
    ("required", True, call("plan_route", {"stops": []}), False),  # minItems
    ("required", True, "", False),
    ("get_weather", True, ONE, True),
    ("get_weather", True, NO_ARGS, False),  # only the named tool
    ("get_weather", True, TWO, False),  # exactly one call
    ("get_weather", True, PROSE, False),
    ("now", False, NO_ARGS, True),
    ("auto", True, PROSE, True),
    ("auto", True, "", True),
    ("auto", True, ONE, True),
    ("auto", True, TWO, True),
    ("auto", True, PROSE + "\n" + ONE, True),
    ("auto", True, PROSE + "\n" + NESTED + "\n" + NO_ARGS, True),
    ("auto", False, PROSE + "\n" + TWO, False),
    ("auto", True, "Ünïcode prose ✓ with <tags> and {json}", True),
    ("auto", True, PROSE + " <tool_call>\n{\"name\": \"get_weather\"}", False),  # malformed call
    ("auto", True, PROSE + " <tool_call>" + " oops", False),
    ("auto", True, call("get_weather", {"city": 5}), False),
    ("auto", True, ONE + "\nmore prose after", False),
    # auto also triggers on a bare call object, fenced or not (what hermes-family models write)
    ("auto", True, BARE, True),
    ("auto", True, PROSE + "\n```json\n" + BARE + "\n```", True),
    ("auto", True, "```json\n" + BARE, True),
    ("auto", True, bare("unknown", {}), False),  # a bare object naming no declared tool
    ("auto", True, bare("get_weather", {"city": "x", "extra": 1}), False),
    ("auto", True, PROSE + ' {"name": "Bob"} is not a call', False),  # prose never holds a trigger
    ("auto", True, BARE + "\nprose after", False),
    ("required", True, BARE, False),  # required and named keep the tags
    # arguments carry declared parameters only, unless the schema keeps its object open
    ("required", True, call("open_schema", {"x": 1}), False),
    ("required", True, call("open_schema", {}), True),
    ("required", True, call("kept_open", {"x": 1, "y": 2}), True),
]


@pytest.mark.parametrize(("choice", "parallel", "text", "expected"), CASES)
def test_tool_grammar_modes(
    llguidance_backend: Any, tokenizer: Any, vocab_size: int, choice: str, parallel: bool, text: str, expected: bool
) -> None:
    spec = ToolCalls(TOOLS, choice, parallel)
    assert accepts(llguidance_backend, tokenizer, vocab_size, spec, text) is expected


def test_single_call_terminates(llguidance_backend: Any, tokenizer: Any) -> None:
    matcher = llguidance_backend.compile(ToolCalls(TOOLS, "get_weather", False)).matcher()
    for token_id in tokenizer.encode(ONE, add_special_tokens=False):
        assert matcher.accept_token(token_id)
    assert matcher.is_terminated()  # nothing can follow: the engine ends the request


def test_rollback_and_reject_keep_state(llguidance_backend: Any, tokenizer: Any) -> None:
    matcher = llguidance_backend.compile(ToolCalls(TOOLS, "required", True)).matcher()
    ids = tokenizer.encode(ONE, add_special_tokens=False)
    for token_id in ids[:5]:
        assert matcher.accept_token(token_id)
    bad = tokenizer.encode("zzz", add_special_tokens=False)[0]
    assert not matcher.accept_token(bad)  # rejected, state unchanged
    matcher.rollback(2)
    for token_id in ids[3:]:
        assert matcher.accept_token(token_id)
    assert matcher.accept_token(int(tokenizer.eos_token_id))


def test_tool_choice_none_needs_no_grammar() -> None:
    assert tool_calls_spec(TOOLS, "none") is None
    assert tool_calls_spec((), "auto") is None
    assert tool_calls_spec(TOOLS, "required") == ToolCalls(TOOLS, "required", True)


@pytest.mark.parametrize(
    ("tools", "choice", "fragment"),
    [
        ((), "required", "needs at least one tool"),
        (TOOLS, "missing_tool", "missing_tool"),
        ((WEATHER, WEATHER), "auto", "unique"),
        ((ToolSpec("bad", '{"type": "strin"}'),), "auto", "invalid JSON schema"),
    ],
)
def test_tool_errors(tools: tuple[ToolSpec, ...], choice: str, fragment: str) -> None:
    with pytest.raises(GrammarError, match=fragment):
        tool_calls_spec(tools, choice)


def test_unsupported_tool_schema_is_refused(llguidance_backend: Any) -> None:
    tool = ToolSpec.of("f", {"type": "object", "properties": {"x": {"not": {"type": "string"}}}})
    with pytest.raises(GrammarError, match="not"):
        llguidance_backend.compile(ToolCalls((tool,), "required"))


def test_outlines_refuses_tool_calls(outlines_backend: Any) -> None:
    with pytest.raises(GrammarError, match="llguidance"):
        outlines_backend.compile(ToolCalls(TOOLS, "required"))


def test_parse_tool_calls() -> None:
    content, calls = parse_tool_calls(PROSE + "\n" + NESTED + "\n" + NO_ARGS)
    assert content == PROSE
    assert [name for name, _ in calls] == ["plan_route", "now"]
    assert json.loads(calls[0][1]) == {"stops": [{"name": "A", "lat": 1.5}, {"name": "Ü", "lat": -2}]}
    assert json.loads(calls[1][1]) == {}
    assert parse_tool_calls("just text <tool_ not a call") == ("just text <tool_ not a call", [])
    assert parse_tool_calls("<tool_call>oops</tool_call>") == ("<tool_call>oops</tool_call>", [])
    # other key order (no grammar): still a call
    content, calls = parse_tool_calls('<tool_call>\n{"arguments": {"a": 1}, "name": "f"}\n</tool_call>')
    assert calls == [("f", '{"a": 1}')]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_stream_parser_matches_batch(chunk: int) -> None:
    text = PROSE + "\n" + ONE + "\n" + NESTED + "\n" + NO_ARGS
    parser = ToolCallStreamParser()
    events = []
    for start in range(0, len(text), chunk):
        events += parser.feed(text[start : start + chunk])
    events += parser.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert content.rstrip() == PROSE
    starts = [e for e in events if isinstance(e, ToolCallStart)]
    assert [(e.index, e.name) for e in starts] == [(0, "get_weather"), (1, "plan_route"), (2, "now")]
    assert [e.index for e in events if isinstance(e, ToolCallEnd)] == [0, 1, 2]
    _, calls = parse_tool_calls(text)
    for index, (_, arguments) in enumerate(calls):
        streamed = "".join(e.fragment for e in events if isinstance(e, ToolCallArgs) and e.index == index)
        assert streamed == arguments
    # order: each call's start comes before its fragments, its end after them
    kinds = [(type(e).__name__, getattr(e, "index", None)) for e in events if not isinstance(e, ContentDelta)]
    assert kinds.index(("ToolCallStart", 1)) > kinds.index(("ToolCallEnd", 0))


def test_stream_parser_holds_back_partial_tag() -> None:
    parser = ToolCallStreamParser()
    assert parser.feed("hello <tool") == [ContentDelta("hello ")]
    assert parser.feed("box>") == [ContentDelta("<toolbox>")]
    assert parser.finish() == []


@pytest.mark.parametrize("chunk", [1, 2, 5, 1000])
def test_stream_parser_reads_a_fenced_bare_call(chunk: int) -> None:
    text = "Sure.\n```json\n" + bare("get_weather", {"city": "Paris {x}", "days": 2}) + "\n```"
    parser = ToolCallStreamParser()
    events = []
    for start in range(0, len(text), chunk):
        events += parser.feed(text[start : start + chunk])
    events += parser.finish()
    assert "".join(e.text for e in events if isinstance(e, ContentDelta)) == "Sure.\n"
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["get_weather"]
    args = "".join(e.fragment for e in events if isinstance(e, ToolCallArgs))
    assert json.loads(args) == {"city": "Paris {x}", "days": 2}
    assert parser.calls == [("get_weather", args)]


def test_parse_bare_calls_and_what_is_not_one() -> None:
    assert parse_tool_calls(BARE) == ("", [("get_weather", '{"city": "Paris"}')])
    assert parse_tool_calls("Hi\n" + BARE + "\n```") == ("Hi", [("get_weather", '{"city": "Paris"}')])
    assert parse_tool_calls("a `code` span") == ("a `code` span", [])
    assert parse_tool_calls("```python\nx = 1\n```") == ("```python\nx = 1\n```", [])
    assert parse_tool_calls('{"a": {"b": 1}}') == ('{"a": {"b": 1}}', [])


def test_cut_answers_keep_complete_arguments() -> None:
    # cut inside the close tag: the arguments object was complete, and it is all that comes back
    assert parse_tool_calls(ONE[: -len("_call>")])[1] == [("get_weather", '{"city": "Zürich 東京 🌧", "days": 3}')]
    assert parse_tool_calls(BARE[:-1])[1] == [("get_weather", '{"city": "Paris"}')]
    # cut inside the arguments: they come back as far as they got (finish_reason says length)
    assert parse_tool_calls('<tool_call>\n{"name": "f", "arguments": {"city": "Tok')[1] == [("f", '{"city": "Tok')]


@pytest.mark.parametrize("text", [
    PROSE + " " + ONE + "\n" + NO_ARGS,
    "```json\n" + bare("plan_route", {"stops": [{"name": "A}", "lat": 1}]}) + "\n```",
    '<tool_call>\n{"name": "bad\nname", "arguments": {}}\n</tool_call>',  # not JSON: content
    '<tool_call>\n{"name": "a\\qb", "arguments": {}}\n</tool_call>',
])
def test_stream_parser_gives_the_same_answer_however_the_text_is_split(text: str) -> None:
    import random

    whole = parse_tool_calls(text)
    rng = random.Random(0)
    for _ in range(200):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 8)))
        parser = ToolCallStreamParser()
        events = []
        for start, end in zip([0, *cuts], [*cuts, len(text)], strict=True):
            events += parser.feed(text[start:end])
        events += parser.finish()
        content = "".join(e.text for e in events if isinstance(e, ContentDelta))
        assert (content.rstrip() if parser.calls else content, parser.calls) == whole, cuts
