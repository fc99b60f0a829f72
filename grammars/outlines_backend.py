"""The alternative backend: outlines-core (regex → token-level DFA index, built eagerly).

outlines-core 0.2.x silently ignores or mistranslates several schema keywords (numeric bounds,
uniqueItems, allOf, patterns, `{}` sub-schemas, …); schema_check.outlines_unsupported pre-scans
for them so such schemas are refused by name, never compiled loosely. Tool calls are refused:
use the llguidance backend for them.
"""

from __future__ import annotations

import json
from typing import Any

import outlines_core
import torch
from outlines_core.json_schema import build_regex_from_schema

from sluicegate.grammars.backend import GrammarError
from sluicegate.grammars.schema_check import outlines_unsupported, validate_schema
from sluicegate.grammars.specs import Choice, GrammarSpec, JsonObject, JsonSchema, Lark, Regex, ToolCalls
from sluicegate.grammars.vocab import eos_token_ids, outlines_vocabulary

MAX_ROLLBACK = 64  # tokens a matcher can undo (outlines keeps a bounded state history)
MAX_REGEX_CHARS = 20_000  # beyond this the DFA build takes seconds and gigabytes (measured)
_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def regex_escape(text: str) -> str:
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in text)


def spec_regex(spec: GrammarSpec) -> str:
    """The regex outlines enforces for a spec; GrammarError where it cannot be exact."""
    if isinstance(spec, JsonSchema):
        schema = spec.schema
        validate_schema(schema)
        problem = outlines_unsupported(schema)
        if problem:
            raise GrammarError(f"JSON schema not supported by the outlines backend: {problem}")
        return build_regex_from_schema(json.dumps(schema), "")
    if isinstance(spec, JsonObject):
        return build_regex_from_schema('{"type": "object"}', "")
    if isinstance(spec, Regex):
        return spec.pattern
    if isinstance(spec, Choice):
        if not spec.options:
            raise GrammarError("a choice needs at least one option")
        return "(" + "|".join(regex_escape(option) for option in spec.options) + ")"
    if isinstance(spec, ToolCalls):
        raise GrammarError("the outlines backend does not support tool calls; use the llguidance backend")
    if isinstance(spec, Lark):
        raise GrammarError("the outlines backend does not support grammars (guided_grammar); use the llguidance backend")
    raise GrammarError(f"unsupported grammar spec {type(spec).__name__}")


class OutlinesMatcher:
    """One request's grammar state (see grammars.backend.Matcher for the contract)."""

    __slots__ = ("_guide", "_grammar", "_ended")

    def __init__(self, guide: Any, grammar: OutlinesGrammar) -> None:
        self._guide = guide
        self._grammar = grammar
        self._ended = False  # EOS accepted: outlines has no state after EOS, so we keep the flag

    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        # bitmask: [batch, ceil(vocab/32)] int32 on CPU
        words = bitmask[row]
        if self._ended:
            words.zero_()
            return
        self._guide.write_mask_into(words.data_ptr(), words.numel(), words.element_size())

    def accept_token(self, token_id: int) -> bool:
        if self._ended:
            return False
        if token_id == self._grammar.eos_id:
            self._ended = self._guide.is_finished()
            return self._ended
        try:
            self._guide.advance(token_id, return_tokens=False)
        except ValueError:  # no transition: the guide's state is unchanged
            return False
        return True

    def error(self) -> str | None:
        return None  # outlines' index is complete once built: it cannot fail at run time

    def is_terminated(self) -> bool:
        return self._ended or self._grammar.only_eos_left(self._guide)

    def rollback(self, num_tokens: int) -> None:
        if num_tokens and self._ended:
            self._ended = False
            num_tokens -= 1
        if num_tokens:
            self._guide.rollback_state(num_tokens)

    def forced_tokens(self) -> list[int]:
        return []  # outlines' index has no forced-token query: every token is sampled


class OutlinesGrammar:
    def __init__(self, index: Any, eos_id: int) -> None:
        self.index = index
        self.eos_id = eos_id
        self._dead_ends: dict[int, bool] = {}  # state → only EOS may follow (filled lazily)

    def matcher(self) -> OutlinesMatcher:
        return OutlinesMatcher(outlines_core.Guide(self.index, max_rollback=MAX_ROLLBACK), self)

    def only_eos_left(self, guide: Any) -> bool:
        state = guide.get_state()
        known = self._dead_ends.get(state)
        if known is None:
            known = guide.is_finished() and guide.get_tokens() == [self.eos_id]
            self._dead_ends[state] = known
        return known


class OutlinesBackend:
    name = "outlines"

    def __init__(self, tokenizer: Any, vocab_size: int | None = None) -> None:
        self.vocabulary = outlines_vocabulary(tokenizer)
        self.eos_id = eos_token_ids(tokenizer)[0]
        self.vocab_size = vocab_size

    def compile(self, spec: GrammarSpec) -> OutlinesGrammar:
        try:
            regex = spec_regex(spec)
        except GrammarError:
            raise
        except (ValueError, TypeError) as exc:
            raise GrammarError(f"outlines cannot build a regex for this spec: {exc}") from None
        if len(regex) > MAX_REGEX_CHARS:
            raise GrammarError(
                f"spec too large for the outlines backend ({len(regex)} regex chars > {MAX_REGEX_CHARS})"
            )
        try:
            index = outlines_core.Index(regex, self.vocabulary)
        except (ValueError, TypeError) as exc:
            what = "invalid regex" if isinstance(spec, Regex) else "outlines cannot compile this spec"
            raise GrammarError(f"{what}: {str(exc).splitlines()[0] if str(exc) else exc}") from None
        return OutlinesGrammar(index, self.eos_id)
