"""Every tool-call format: its grammar (compiled by llguidance, walked token by token) accepts
exactly its valid calls in each tool_choice mode, and its streaming parser turns the text back
into OpenAI tool-call events however the text is split."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate.grammars import ToolCalls, allocate_bitmask, get_backend
from sluicegate.grammars.conformance import walk
from sluicegate.grammars.tool_formats import (
    ContentDelta,
    ToolCallArgs,
    ToolCallEnd,
    ToolCallStart,
    get_format,
    parse_tool_calls,
)
from tests.grammars.tool_format_cases import (
    BAD_ARGS,
    BAD_NAME,
    LAYOUTS,
    MISSING,
    NESTED,
    NO_ARGS,
    ONE,
    PROSE,
    TOOLS,
    Call,
    Layout,
    format_tokenizer,
)

NAMES = list(LAYOUTS)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return format_tokenizer()


@pytest.fixture(scope="module")
def backend(tokenizer: Any) -> Any:
    return get_backend("llguidance", tokenizer)


@pytest.fixture(scope="module")
def accepts(tokenizer: Any, backend: Any) -> Any:
    """accepts(format, tool_choice, parallel, text, as_text=False) -> the grammar takes the text
    (as_text: special-token text spelled with ordinary tokens)."""
    compiled: dict[tuple[str, str, bool], Any] = {}
    mask = allocate_bitmask(1, backend.vocab_size)

    def check(fmt: str, choice: str, parallel: bool, text: str, as_text: bool = False) -> bool:
        key = (fmt, choice, parallel)
        if key not in compiled:
            compiled[key] = backend.compile(ToolCalls(TOOLS, choice, parallel, fmt))
        ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=as_text)
        return bool(walk(compiled[key], ids, int(tokenizer.eos_token_id), mask).accepted)

    return check


def grammar_cases(layout: Layout) -> list[tuple[str, bool, str, bool]]:
    """(tool_choice, parallel, text, accepted) for one format."""
    calls, prose = layout.calls, layout.prose
    cases = [
        ("required", True, calls([ONE]), True),
        ("required", True, calls([NO_ARGS]), True),
        ("required", True, calls([NESTED]), True),
        ("required", True, calls([ONE, NO_ARGS]), True),
        ("required", False, calls([ONE]), True),
        ("required", False, calls([ONE, NO_ARGS]), False),  # one call only when not parallel
        ("required", True, prose(PROSE), False),
        ("required", True, "", False),
        ("required", True, calls([BAD_NAME]), False),
        ("required", True, calls([BAD_ARGS]), False),
        ("required", True, calls([MISSING]), False),
        ("required", True, calls([("now", {"x": 1})]), False),  # no parameters means none
        ("get_weather", True, calls([ONE]), True),
        ("get_weather", True, calls([NO_ARGS]), False),  # only the named tool
        ("get_weather", True, calls([ONE, ONE]), False),  # exactly one call
        ("get_weather", True, prose(PROSE), False),
        ("auto", True, prose(PROSE), True),
        ("auto", True, "", True),
        ("auto", True, prose("Ünïcode prose ✓ with <tags>, [brackets] and {json}"), True),
        ("auto", True, calls([ONE]), True),
        ("auto", True, calls([NESTED, NO_ARGS]), True),
        ("auto", False, calls([NESTED, NO_ARGS]), False),
        ("auto", True, calls([BAD_ARGS]), False),
        ("auto", True, calls([BAD_NAME]), False),
        ("auto", True, calls([ONE]) + "\nmore prose after", False),
    ]
    if layout.prose_then is not None:
        cases += [("auto", True, layout.prose_then(PROSE, calls([ONE, NESTED])), True),
                  ("auto", True, layout.prose_then(PROSE, calls([MISSING])), False),
                  ("required", True, layout.prose_then(PROSE, calls([ONE])), False)]
    return cases


CASES = [(name, *case) for name in NAMES for case in grammar_cases(LAYOUTS[name])]


@pytest.mark.parametrize(("fmt", "choice", "parallel", "text", "expected"), CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_grammar_accepts_exactly_the_valid_calls(
    accepts: Any, fmt: str, choice: str, parallel: bool, text: str, expected: bool
) -> None:
    assert accepts(fmt, choice, parallel, text) is expected


@pytest.mark.parametrize("fmt", [n for n in NAMES if LAYOUTS[n].specials])
def test_special_tokens_are_matched_as_tokens_never_as_text(accepts: Any, fmt: str) -> None:
    layout = LAYOUTS[fmt]
    text = layout.calls([ONE]) if fmt != "llama3_json" else "<|python_tag|>" + layout.calls([ONE])
    assert accepts(fmt, "required", True, text)
    assert not accepts(fmt, "required", True, text, as_text=True)
    if layout.prose_then is not None:
        tagged = layout.prose_then(PROSE, layout.calls([ONE]))
        assert accepts(fmt, "auto", True, tagged)
        # nor is the marker's text prose: the parser, which reads text, would take it for a call
        assert not accepts(fmt, "auto", True, tagged, as_text=True)


def _events(fmt: str, text: str, chunk: int) -> tuple[list[Any], list[tuple[str, str]]]:
    parser = get_format(fmt).parser()
    events: list[Any] = []
    for start in range(0, len(text), chunk):
        events += parser.feed(text[start : start + chunk])
    events += parser.finish()
    return events, parser.calls


def _check_events(events: list[Any], calls: list[tuple[str, str]], expected: list[Call], prose: str) -> None:
    content = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert content.strip() == prose
    assert [(e.index, e.name) for e in events if isinstance(e, ToolCallStart)] == [
        (i, name) for i, (name, _) in enumerate(expected)]
    assert [e.index for e in events if isinstance(e, ToolCallEnd)] == list(range(len(expected)))
    for index, (name, args) in enumerate(expected):
        streamed = "".join(e.fragment for e in events if isinstance(e, ToolCallArgs) and e.index == index)
        assert json.loads(streamed) == args
        assert calls[index] == (name, streamed)
    # each call: its start, then its fragments, then its end; the next call after that end
    order = [(type(e).__name__, e.index) for e in events if not isinstance(e, ContentDelta)]
    for index in range(len(expected)):
        mine = [i for i, (_, idx) in enumerate(order) if idx == index]
        assert order[mine[0]][0] == "ToolCallStart" and order[mine[-1]][0] == "ToolCallEnd"
        assert mine == list(range(mine[0], mine[-1] + 1))


@pytest.mark.parametrize("fmt", NAMES)
@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_stream_parser_single_and_parallel(fmt: str, chunk: int) -> None:
    layout = LAYOUTS[fmt]
    for expected in ([ONE], [ONE, NESTED, NO_ARGS]):
        text = layout.calls(expected)
        events, calls = _events(fmt, text, chunk)
        _check_events(events, calls, expected, "")
        assert parse_tool_calls(text, fmt) == ("", calls)  # the batch parser is the same parser
        if layout.prose_then is not None:
            events, calls = _events(fmt, layout.prose_then(PROSE, text), chunk)
            _check_events(events, calls, expected, PROSE)


@pytest.mark.parametrize("fmt", NAMES)
def test_prose_is_content(fmt: str) -> None:
    for text in (PROSE, "[1] a note {x} <b>", ""):
        events, calls = _events(fmt, LAYOUTS[fmt].prose(text) if text else text, 1)
        assert calls == [] and "".join(e.text for e in events if isinstance(e, ContentDelta)) == text


@pytest.mark.parametrize("fmt", NAMES)
def test_cut_call_is_closed_as_far_as_it_got(fmt: str) -> None:
    """max_tokens inside the arguments: the call ends, its arguments a prefix of the full ones."""
    text = LAYOUTS[fmt].calls([ONE])
    full = json.dumps(ONE[1], ensure_ascii=False)
    cut = text[: text.index("東") + 1]  # inside the city
    events, calls = _events(fmt, cut, 1)
    assert [e.name for e in events if isinstance(e, ToolCallStart)] == ["get_weather"]
    assert isinstance(events[-1], ToolCallEnd)
    assert len(calls) == 1 and full.startswith(calls[0][1]) and calls[0][1] != full


@pytest.mark.parametrize("fmt", NAMES)
def test_prose_offers_no_special_token_but_the_trigger(tokenizer: Any, backend: Any, fmt: str) -> None:
    """Tool-grammar output is decoded with special tokens kept, so in prose the grammar must offer
    none but the format's trigger (and EOS): no <|im_start|> or role token can reach the text."""
    from sluicegate.grammars import token_allowed
    from sluicegate.grammars.vocab import special_token_ids

    specials = special_token_ids(tokenizer)
    matcher = backend.compile(ToolCalls(TOOLS, "auto", True, fmt)).matcher()
    for token_id in tokenizer.encode(LAYOUTS[fmt].prose(PROSE), add_special_tokens=False):
        assert matcher.accept_token(token_id)
    mask = allocate_bitmask(1, backend.vocab_size)
    matcher.fill_bitmask(mask, 0)
    allowed = {s for s in specials if token_allowed(mask, 0, s)}
    trigger = {"llama3_json": "<|python_tag|>", "mistral": "[TOOL_CALLS]", "mistral_args": "[TOOL_CALLS]",
               "phi4_mini": "<|tool_call|>", "granite": "<|tool_call|>",
               "deepseek_v3": "<｜tool▁calls▁begin｜>", "deepseek_v31": "<｜tool▁calls▁begin｜>"}.get(fmt)
    expected = {int(tokenizer.eos_token_id)} | ({tokenizer.convert_tokens_to_ids(trigger)} if trigger else set())
    assert allowed == expected


_NOISE = ["{", "}", "[", "]", '"', "\\", "\n", " ", ",", "=", "(", ")", "<|", "<tool_call>", "[TOOL_CALLS]", "[ARGS]",
          "<|python_tag|>", "<|tool_call|>", "<|channel|>", "<|message|>", "<|call|>", "<|end|>", "<｜tool▁sep｜>",
          "<parameter=x>", "</parameter>", "<function=f>", "True"]


@pytest.mark.parametrize("fmt", [n for n in NAMES if n != "hermes"])  # hermes: not this module's (see report)
def test_parsers_agree_however_the_text_is_split(fmt: str) -> None:
    """Cut, spliced and doubled outputs (what a model writes without a grammar, or cut by
    max_tokens): fed whole, by characters or in uneven pieces, a parser says the same thing."""
    import random

    rng = random.Random(fmt)
    layout = LAYOUTS[fmt]
    texts = [layout.calls([ONE]), layout.calls([ONE, NESTED, NO_ARGS]), layout.prose(PROSE)]
    if layout.prose_then is not None:
        texts.append(layout.prose_then(PROSE, layout.calls([NESTED])))
    for _ in range(150):
        text = rng.choice(texts)
        if rng.random() < 0.4:
            text = text[: rng.randrange(len(text) + 1)]
        for _ in range(rng.randrange(3)):
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(_NOISE) + text[at:]
        seen = []
        for chunk in (1, 3, len(text) + 1):
            events, calls = _events(fmt, text, chunk)
            seen.append(("".join(e.text for e in events if isinstance(e, ContentDelta)), calls))
        assert seen[0] == seen[1] == seen[2], text
