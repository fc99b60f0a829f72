"""The default grammar backend: llguidance (Earley parser over a lexer, masks computed lazily).

Compilation parses the grammar once into a template LLMatcher; each request gets a deep copy (cheap)
so no request pays for grammar construction on the step loop. llguidance errors on any schema
keyword or format it cannot enforce (we keep its `lenient` option off), which is what makes
"compiled ⇒ enforced exactly" hold.
"""

from __future__ import annotations

import json
from typing import Any

import llguidance
import torch

from sluicegate.grammars.backend import GrammarError
from sluicegate.grammars.schema_check import validate_schema
from sluicegate.grammars.specs import Choice, GrammarSpec, JsonObject, JsonSchema, Lark, Regex, ToolCalls
from sluicegate.grammars.tool_grammar import tool_call_lark
from sluicegate.grammars.vocab import eos_token_ids, llguidance_tokenizer, vocab_size_of

# Compact JSON: no free whitespace anywhere, "," and ":" as separators. Forced as an override so
# an "x-guidance" key inside a user's schema cannot loosen it.
JSON_LAYOUT: Any = {  # llguidance JsonCompileOptions
    "item_separator": ",",
    "key_separator": ":",
    "whitespace_flexible": False,
    "lenient": False,
}


class LLGuidanceMatcher:
    """One request's grammar state (see grammars.backend.Matcher for the contract)."""

    __slots__ = ("inner", "_eos")

    def __init__(self, inner: llguidance.LLMatcher, eos_ids: frozenset[int]) -> None:
        self.inner = inner
        self._eos = eos_ids

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        # bitmask: [batch, ceil(vocab/32)] int32 on CPU; the row is written in place, GIL released
        words = bitmask[row]
        self.inner.unsafe_compute_mask_ptr(words.data_ptr(), words.numel() * words.element_size())
        if self.inner.is_error():
            eos_only(words, self._eos)

    def error(self) -> str | None:
        """Why the matcher failed at run time (a parser/lexer resource limit), or None.

        A failed matcher reports is_terminated() and allows only EOS, so the request ends; the
        engine should finish it with an error carrying this message.
        """
        return self.inner.get_error() if self.inner.is_error() else None

    def accept_token(self, token_id: int) -> bool:
        if token_id in self._eos:  # EOS is accepted exactly when the grammar may end here
            return self.inner.is_accepting() and self.inner.consume_token(token_id)
        # try_consume_tokens leaves the matcher untouched (not in its error state) on a rejection
        return self.inner.try_consume_tokens([token_id]) == 1

    def is_terminated(self) -> bool:
        return self.inner.is_stopped()

    def rollback(self, num_tokens: int) -> None:
        if num_tokens and not self.inner.rollback(num_tokens):
            raise ValueError(f"cannot roll back {num_tokens} tokens: {self.inner.get_error()}")

    def forced_tokens(self) -> list[int]:
        return [] if self.inner.is_error() else list(self.inner.compute_ff_tokens())


def eos_only(words: torch.Tensor, eos_ids: frozenset[int]) -> None:
    # words: [ceil(vocab/32)] int32 — one mask row, rewritten to allow only the EOS tokens
    words.zero_()
    for eos in eos_ids:
        value = int(words[eos // 32]) | (1 << (eos % 32))
        words[eos // 32] = value - (1 << 32) if value >= 1 << 31 else value


class LLGuidanceGrammar:
    __slots__ = ("_template", "_eos", "warnings")

    def __init__(self, template: llguidance.LLMatcher, eos_ids: frozenset[int], warnings: list[str]) -> None:
        self._template = template
        self._eos = eos_ids
        self.warnings = warnings

    def matcher(self) -> LLGuidanceMatcher:
        return LLGuidanceMatcher(self._template.deep_copy(), self._eos)


def grammar_text(spec: GrammarSpec) -> str:
    """The llguidance grammar (its JSON form) for a spec; raises GrammarError on bad input."""
    if isinstance(spec, JsonSchema):
        schema = spec.schema
        validate_schema(schema)
        if isinstance(schema, bool):
            schema = {} if schema else {"not": {}}
        return llguidance.LLMatcher.grammar_from_json_schema(schema, overrides=JSON_LAYOUT)
    if isinstance(spec, JsonObject):
        return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, overrides=JSON_LAYOUT)
    if isinstance(spec, Regex):
        return llguidance.LLMatcher.grammar_from_regex(spec.pattern)
    if isinstance(spec, Choice):
        if not spec.options:
            raise GrammarError("a choice needs at least one option")
        alternatives = " | ".join(json.dumps(option, ensure_ascii=False) for option in spec.options)
        return llguidance.LLMatcher.grammar_from_lark(f"start: {alternatives}\n")
    if isinstance(spec, Lark):
        return llguidance.LLMatcher.grammar_from_lark(spec.grammar)
    if isinstance(spec, ToolCalls):
        return llguidance.LLMatcher.grammar_from_lark(tool_call_lark(spec))
    raise GrammarError(f"unsupported grammar spec {type(spec).__name__}")


def _describe_error(spec: GrammarSpec, message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else "unknown error"
    if isinstance(spec, Regex):
        return f"invalid regex {spec.pattern!r}: {first}"
    if isinstance(spec, JsonSchema | JsonObject):
        return f"JSON schema not supported: {first}"
    return f"grammar not supported: {first}"


def _param(spec: GrammarSpec) -> str | None:
    """The request field a compile error points at (None: the gateway's default, response_format)."""
    return "tools" if isinstance(spec, ToolCalls) else None


class LLGuidanceBackend:
    name = "llguidance"

    def __init__(self, tokenizer: Any, vocab_size: int | None = None) -> None:
        self.vocab_size = vocab_size or vocab_size_of(tokenizer)
        self.ll_tokenizer = llguidance_tokenizer(tokenizer, self.vocab_size)
        self.eos_ids = frozenset(eos_token_ids(tokenizer))
        self.limits = llguidance.LLParserLimits(verbose_errors=False)

    def compile(self, spec: GrammarSpec) -> LLGuidanceGrammar:
        try:
            text = grammar_text(spec)
        except ValueError as exc:  # GrammarError is a ValueError; llguidance raises ValueError too
            if isinstance(exc, GrammarError):
                raise
            raise GrammarError(_describe_error(spec, str(exc)), _param(spec)) from None
        # Building the matcher validates the grammar (one parse, not two); errors leave it in
        # its error state rather than raising.
        template = llguidance.LLMatcher(self.ll_tokenizer, text, log_level=0, limits=self.limits)
        if template.is_error():
            raise GrammarError(_describe_error(spec, template.get_error()), _param(spec))
        messages = template.get_grammar_warnings()
        return LLGuidanceGrammar(template, self.eos_ids, messages)
