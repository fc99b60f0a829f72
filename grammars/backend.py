"""The grammar-backend protocol: the only face of grammars/ that the engine sees.

compile(spec) -> Grammar happens off the step loop (see grammars/cache.py); each request gets its
own Matcher from grammar.matcher(). Bitmasks are int32 tensors of shape
[batch, ceil(vocab_size / 32)]: bit (t % 32) of word (t // 32) set means token t is allowed.
"""

from __future__ import annotations

from typing import Protocol

import torch

from sluicegate.grammars.specs import GrammarSpec


class GrammarError(ValueError):
    """A spec that cannot be compiled or enforced exactly (reported to clients as a 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class Matcher(Protocol):
    def fill_bitmask(self, bitmask: torch.Tensor, row: int) -> None:
        """Write the allowed-token mask for the next token into bitmask[row] (int32 words)."""
        ...

    def accept_token(self, token_id: int) -> bool:
        """Advance by one sampled token; False if the grammar rejects it (state unchanged)."""
        ...

    def is_terminated(self) -> bool:
        """True once the grammar is complete and nothing more may follow: the request ends."""
        ...

    def rollback(self, num_tokens: int) -> None:
        """Undo the last num_tokens accepted tokens."""
        ...

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar allows as the only continuation from here (canonically tokenized),
        not yet accepted; empty when the next token is a choice."""
        ...


class Grammar(Protocol):
    def matcher(self) -> Matcher: ...


class GrammarBackend(Protocol):
    name: str

    def compile(self, spec: GrammarSpec) -> Grammar:
        """Compile a spec; raise GrammarError when it cannot be enforced exactly."""
        ...


def bitmask_words(vocab_size: int) -> int:
    return (vocab_size + 31) // 32


def allocate_bitmask(batch: int, vocab_size: int) -> torch.Tensor:
    """[batch, ceil(vocab/32)] int32, all tokens allowed (-1 is every bit set)."""
    return torch.full((batch, bitmask_words(vocab_size)), -1, dtype=torch.int32)
