"""Special (control) tokens never stand for text in a grammar, on either backend.

A schema whose property name holds special-token text ("k<|im_end|>") used to make llguidance
force the special token <|im_end|> (= EOS) inside the JSON string, then refuse it as EOS: the
server answered 500 'grammar rejected sampled token 2'. The name must be spelled with ordinary
tokens, and no step of the walk may allow a special token other than EOS at the very end.
"""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.grammars import JsonSchema, allocate_bitmask, token_allowed
from sluicegate.grammars.conformance import walk
from sluicegate.grammars.vocab import special_token_ids

NAME = "k<|im_end|>"
SCHEMA = JsonSchema.of({"type": "object", "properties": {NAME: {"type": "string"}}, "required": [NAME]})
DOCUMENT = '{"k<|im_end|>":"v"}'


def ordinary_ids(tokenizer: Any, text: str) -> list[int]:
    """The text as ordinary tokens: special-token text split like any other text."""
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    return ids


def allowed_specials(matcher: Any, vocab_size: int, specials: set[int]) -> list[int]:
    mask = allocate_bitmask(1, vocab_size)
    matcher.fill_bitmask(mask, 0)
    return sorted(s for s in specials if s < vocab_size and token_allowed(mask, 0, s))


@pytest.fixture(scope="module")
def specials(tokenizer: Any) -> set[int]:
    found = special_token_ids(tokenizer)
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in found  # the case this file is about
    return found


def test_the_name_is_spelled_with_ordinary_tokens(
    backend: Any, tokenizer: Any, vocab_size: int, specials: set[int]
) -> None:
    ids = ordinary_ids(tokenizer, DOCUMENT)
    assert not specials & set(ids)
    grammar = backend.compile(SCHEMA)
    result = walk(grammar, ids, int(tokenizer.eos_token_id), allocate_bitmask(1, vocab_size))
    assert result.accepted, result.where


def test_no_special_token_is_allowed_inside_the_document(
    backend: Any, tokenizer: Any, vocab_size: int, specials: set[int]
) -> None:
    matcher = backend.compile(SCHEMA).matcher()
    for position, token_id in enumerate(ordinary_ids(tokenizer, DOCUMENT)):
        assert allowed_specials(matcher, vocab_size, specials) == [], f"before token #{position}"
        assert matcher.accept_token(token_id), f"token #{position} ({token_id}) refused"
    # only at the end may the grammar stop, with EOS
    assert allowed_specials(matcher, vocab_size, specials) == [int(tokenizer.eos_token_id)]


def test_the_special_token_is_refused_where_its_text_is_expected(
    backend: Any, tokenizer: Any, vocab_size: int, specials: set[int]
) -> None:
    matcher = backend.compile(SCHEMA).matcher()
    for token_id in ordinary_ids(tokenizer, '{"k'):
        assert matcher.accept_token(token_id)
    # the rest of the name is forced text here: llguidance used to offer only <|im_end|>
    assert allowed_specials(matcher, vocab_size, specials) == []
    mask = allocate_bitmask(1, vocab_size)
    matcher.fill_bitmask(mask, 0)
    assert token_allowed(mask, 0, ordinary_ids(tokenizer, "<")[0])
    assert not matcher.accept_token(tokenizer.convert_tokens_to_ids("<|im_end|>"))


def test_llguidance_tokenizes_special_token_text_as_text(
    llguidance_backend: Any, tokenizer: Any, specials: set[int]
) -> None:
    ll = llguidance_backend.ll_tokenizer
    ids = ll.tokenize_str(NAME)
    assert not specials & set(ids)
    assert ll.decode_bytes(ids) == NAME.encode("utf-8")
    assert all(ll.is_special_token(s) for s in specials)
