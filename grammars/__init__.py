"""Structured outputs: specs → compiled grammars → per-request matchers that fill token bitmasks.

    from sluicegate.grammars import GrammarCompiler, JsonSchema, fill_bitmasks
    compiler = GrammarCompiler("llguidance", tokenizer)
    grammar = compiler.submit(JsonSchema.of(schema)).result()   # off the step loop
    matcher = grammar.matcher()                                 # one per request
"""

from __future__ import annotations

from typing import Any

from sluicegate.grammars.backend import (
    Grammar,
    GrammarBackend,
    GrammarError,
    Matcher,
    allocate_bitmask,
    bitmask_words,
)
from sluicegate.grammars.specs import (
    Choice,
    GrammarSpec,
    JsonObject,
    JsonSchema,
    Regex,
    ToolCalls,
    ToolChoice,
    ToolSpec,
)

BACKENDS = ("llguidance", "outlines")
DEFAULT_BACKEND = "llguidance"


def get_backend(name: str, tokenizer: Any, vocab_size: int | None = None) -> GrammarBackend:
    """A backend for `tokenizer`; vocab_size = the model's logits width if it exceeds the tokenizer's."""
    if name == "llguidance":
        from sluicegate.grammars.llguidance_backend import LLGuidanceBackend

        return LLGuidanceBackend(tokenizer, vocab_size)
    if name == "outlines":
        from sluicegate.extras import require

        require("outlines_core", "outlines", "--grammar-backend outlines")
        from sluicegate.grammars.outlines_backend import OutlinesBackend

        return OutlinesBackend(tokenizer, vocab_size)
    raise ValueError(f"unknown grammar backend {name!r} (choose from {', '.join(BACKENDS)})")


from sluicegate.grammars.bitmask import apply_bitmask, fill_bitmasks, token_allowed  # noqa: E402
from sluicegate.grammars.cache import GrammarCompiler  # noqa: E402
from sluicegate.grammars.tool_formats import get_format, parse_tool_calls  # noqa: E402
from sluicegate.grammars.tool_grammar import tool_calls_spec  # noqa: E402

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Choice",
    "Grammar",
    "GrammarBackend",
    "GrammarCompiler",
    "GrammarError",
    "GrammarSpec",
    "JsonObject",
    "JsonSchema",
    "Matcher",
    "Regex",
    "ToolCalls",
    "ToolChoice",
    "ToolSpec",
    "allocate_bitmask",
    "apply_bitmask",
    "bitmask_words",
    "fill_bitmasks",
    "get_backend",
    "get_format",
    "parse_tool_calls",
    "tool_calls_spec",
    "token_allowed",
]
