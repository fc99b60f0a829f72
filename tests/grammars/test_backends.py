"""The Matcher contract on both backends, batched mask fill, and the compile cache."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

import pytest
import torch

from sluicegate.grammars import (
    Choice,
    GrammarCompiler,
    GrammarError,
    JsonObject,
    JsonSchema,
    Regex,
    allocate_bitmask,
    apply_bitmask,
    fill_bitmasks,
    token_allowed,
)
from sluicegate.grammars.conformance import walk
from sluicegate.grammars.specs import GrammarSpec, Lark

_COMPILED: dict[tuple[str, GrammarSpec], Any] = {}


def compiled(backend: Any, spec: GrammarSpec) -> Any:
    """Compile once per session: outlines takes seconds for a generic JSON object."""
    key = (backend.name, spec)
    if key not in _COMPILED:
        _COMPILED[key] = backend.compile(spec)
    return _COMPILED[key]


def accepts(backend: Any, tokenizer: Any, vocab_size: int, spec: GrammarSpec, text: str) -> bool:
    ids = tokenizer.encode(text, add_special_tokens=False)
    grammar = compiled(backend, spec)
    return walk(grammar, ids, int(tokenizer.eos_token_id), allocate_bitmask(1, vocab_size)).accepted


@pytest.mark.parametrize(
    ("spec", "text", "expected"),
    [
        (Regex(r"[a-z]+@[a-z]+\.com"), "bob@example.com", True),
        (Regex(r"[a-z]+@[a-z]+\.com"), "bob@example.org", False),
        (Choice(("yes", "no", "maybe so")), "maybe so", True),
        (Choice(("yes", "no")), "yesno", False),
        (Choice(("ja", "nein", "vielleicht ✓")), "vielleicht ✓", True),
        (JsonObject(), '{"a":[1,2,{"b":null}],"c":"ü"}', True),
        (JsonObject(), '{"a": 1}', False),  # compact layout: no free whitespace
        (JsonObject(), "[1]", False),
        (JsonSchema.of({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}), '{"a":"x"}', True),
        (JsonSchema.of({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}), "{}", False),
    ],
)
def test_specs(backend: Any, tokenizer: Any, vocab_size: int, spec: GrammarSpec, text: str, expected: bool) -> None:
    assert accepts(backend, tokenizer, vocab_size, spec, text) is expected


def test_llguidance_numbers_and_bounds(llguidance_backend: Any, tokenizer: Any, vocab_size: int) -> None:
    number = JsonSchema.of({"type": "number", "minimum": 0, "maximum": 1})
    assert accepts(llguidance_backend, tokenizer, vocab_size, number, "0.5")
    assert not accepts(llguidance_backend, tokenizer, vocab_size, number, "1.5")
    unique = JsonSchema.of({"type": "array", "uniqueItems": True})
    with pytest.raises(GrammarError, match="uniqueItems"):
        llguidance_backend.compile(unique)


@pytest.mark.parametrize(
    ("schema", "keyword"),
    [
        ({"type": "integer", "minimum": 3}, "minimum"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems"),
        ({"type": "object", "maxProperties": 2}, "maxProperties"),
        ({"type": "object", "properties": {"a": {}}}, "empty sub-schema"),
        ({"type": "string", "pattern": "a.*"}, "pattern"),
        ({"allOf": [{"type": "object"}]}, "allOf"),
        ({"type": "object", "required": ["x"]}, "required"),
        ({"type": "string", "format": "date-time"}, "format"),
    ],
)
def test_outlines_refuses_what_it_cannot_enforce(outlines_backend: Any, schema: dict[str, Any], keyword: str) -> None:
    with pytest.raises(GrammarError, match=keyword):
        outlines_backend.compile(JsonSchema.of(schema))


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (Regex("(abc"), "invalid regex"),
        (Choice(()), "at least one option"),
        (JsonSchema.of({"type": "strin"}), "invalid JSON schema"),
        (JsonSchema.of({"type": "object", "properties": {"a": {"type": "integer", "minimum": "x"}}}), "invalid JSON schema"),
        (JsonSchema.of({"type": "array", "contains": {"type": "integer"}}), "contains"),
    ],
)
def test_errors_name_the_problem(backend: Any, spec: GrammarSpec, fragment: str) -> None:
    with pytest.raises(GrammarError, match=fragment):
        backend.compile(spec)


def test_eos_only_where_the_grammar_may_end(backend: Any, tokenizer: Any, vocab_size: int) -> None:
    eos = int(tokenizer.eos_token_id)
    matcher = backend.compile(Regex("ab(cd)?")).matcher()
    bitmask = allocate_bitmask(1, vocab_size)
    assert not matcher.accept_token(eos)  # nothing written yet
    for token_id in tokenizer.encode("ab", add_special_tokens=False):
        assert matcher.accept_token(token_id)
    matcher.fill_bitmask(bitmask, 0)
    assert token_allowed(bitmask, 0, eos)
    assert matcher.accept_token(eos)
    assert matcher.is_terminated()
    matcher.rollback(1)  # undo the EOS
    assert not matcher.is_terminated()


def test_fill_bitmasks_batched_equals_per_row(backend: Any, tokenizer: Any, vocab_size: int) -> None:
    specs = [JsonObject(), Regex("[0-9]{3}"), Choice(("alpha", "beta"))]
    matchers = [compiled(backend, spec).matcher() for spec in specs]
    assert matchers[0].accept_token(tokenizer.encode('{"', add_special_tokens=False)[0])
    rows = [3, 0, 2]
    batched = allocate_bitmask(4, vocab_size)
    fill_bitmasks(matchers, batched, rows)
    for matcher, row in zip(matchers, rows, strict=True):
        single = allocate_bitmask(4, vocab_size)
        matcher.fill_bitmask(single, row)
        assert torch.equal(batched[row], single[row])
    assert torch.all(batched[1] == -1)  # untouched row: still all allowed


def test_apply_bitmask() -> None:
    logits = torch.zeros(2, 40)
    bitmask = torch.zeros(2, 2, dtype=torch.int32)
    bitmask[0, 0] = 1 << 5
    bitmask[1, 1] = 1 << 3  # token 35
    apply_bitmask(logits, bitmask)
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [5]
    assert torch.isfinite(logits[1]).nonzero().flatten().tolist() == [35]


class SlowBackend:
    """A real backend whose compile is delayed (to test the cache's timeout without mocks of it)."""

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s, self.name = inner, delay_s, inner.name
        self.calls = 0

    def compile(self, spec: GrammarSpec) -> Any:
        self.calls += 1
        time.sleep(self.delay_s)
        return self.inner.compile(spec)


def test_compiler_caches_and_bounds(tokenizer: Any) -> None:
    compiler = GrammarCompiler("llguidance", tokenizer, max_entries=2)
    counting = SlowBackend(compiler.backend, 0.0)
    compiler.backend = counting
    first = compiler.submit(Regex("a+"))
    assert compiler.submit(Regex("a+")) is first  # same spec, same future
    assert first.result(timeout=10).matcher() is not None
    compiler.compile_sync(Regex("b+"))
    compiler.compile_sync(Regex("c+"))  # evicts a+ (least recently used)
    assert not compiler.cached(Regex("a+")) and compiler.cached(Regex("c+"))
    assert counting.calls == 3
    with pytest.raises(GrammarError):
        compiler.compile_sync(Regex("(bad"))
    assert not compiler.cached(Regex("(bad"))  # failures are not cached
    compiler.close()


def test_compiler_timeout(tokenizer: Any) -> None:
    compiler = GrammarCompiler("llguidance", tokenizer, timeout_s=0.2)
    compiler.backend = SlowBackend(compiler.backend, 1.0)
    future: Future[Any] = compiler.submit(JsonObject())
    with pytest.raises(GrammarError, match="exceeded 0.2 s"):
        future.result(timeout=5)
    assert not compiler.cached(JsonObject())
    compiler.close()


def test_compiler_off_thread(tokenizer: Any) -> None:
    compiler = GrammarCompiler("llguidance", tokenizer)
    caller = threading.get_ident()
    seen: list[int] = []
    compiler.backend = SlowBackend(compiler.backend, 0.0)
    original = compiler.backend.compile

    def record(spec: GrammarSpec) -> Any:
        seen.append(threading.get_ident())
        return original(spec)

    compiler.backend.compile = record  # type: ignore[method-assign]
    compiler.compile_sync(Regex("x"))
    assert seen and seen[0] != caller
    compiler.close()


def test_token_bytes_table_round_trips(tokenizer: Any) -> None:
    from sluicegate.grammars.vocab import special_token_ids, token_bytes_table

    table = token_bytes_table(tokenizer)
    for text in ['{"city":"Zürich 東京 🌧"}', "  tabs\tand\nnewlines", "<tool_call>\n"]:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert b"".join(table[i] or b"?" for i in ids) == text.encode("utf-8")
    specials = special_token_ids(tokenizer)
    assert int(tokenizer.eos_token_id) in specials
    assert all(table[i] is None for i in specials)


def test_lark_grammars_compile_on_llguidance_and_are_refused_by_outlines(
        llguidance_backend: Any, outlines_backend: Any, tokenizer: Any, vocab_size: int) -> None:
    grammar = Lark('start: "colour: " NAME\nNAME: /[a-z]{3,8}/\n')
    assert accepts(llguidance_backend, tokenizer, vocab_size, grammar, "colour: blue")
    assert not accepts(llguidance_backend, tokenizer, vocab_size, grammar, "colour: BLUE")
    with pytest.raises(GrammarError, match="guided_grammar"):
        outlines_backend.compile(grammar)
    with pytest.raises(GrammarError):
        llguidance_backend.compile(Lark("start: (("))
