"""Prompt-lookup (n-gram) speculative decoding: draft tokens by copying what followed the same
n-gram earlier in the prompt or output, verify them all in one forward step.

Agents' outputs copy their context a lot (a city from the user's message, an id from a tool
result, a path from a file listing). When the last n tokens occurred before, the k tokens that
followed them then are a cheap guess of what comes next. The step computes the pending token
and the k drafts as one chunk and samples at each of the k+1 positions; a draft is kept while it
equals the token sampled at its position, and the first token that differs (or the one after the
last draft) is the step's own new token. Every emitted token is sampled from the model's
distribution given the tokens before it, so outputs are distributed exactly as without drafts
(greedy outputs are identical); only the number of forward steps changes.

Under a grammar, drafts are checked against the matcher first (the first token it refuses ends
the draft) and each position is masked by the grammar state after the drafts before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from sluicegate.engine.request import Request
    from sluicegate.grammars.backend import Matcher


@dataclass(frozen=True)
class NgramSettings:
    num_tokens: int  # k: drafts per step at most
    min_n: int  # shortest n-gram that may be matched
    max_n: int  # longest n-gram tried first


@dataclass
class NgramIndex:
    """Where each n-gram of a request's tokens (prompt + output) last ended, kept up to date
    incrementally: a lookup costs O(max_n), not a scan of the context."""

    min_n: int
    max_n: int
    last_end: dict[tuple[int, ...], int] = field(default_factory=dict)
    indexed: int = 0  # n-grams ending before this position are in last_end

    def propose(self, tokens: Sequence[int], k: int) -> list[int]:
        """Up to k drafts to follow `tokens`, from the latest earlier occurrence of its longest
        matching suffix; [] when none of its suffixes occurred before."""
        end = len(tokens) - 1  # the suffix ends here; index everything that ends before it
        for stop in range(self.indexed, end):
            for n in range(self.min_n, self.max_n + 1):
                if stop + 1 >= n:
                    self.last_end[tuple(tokens[stop + 1 - n:stop + 1])] = stop
        self.indexed = max(self.indexed, end)
        for n in range(self.max_n, self.min_n - 1, -1):
            if len(tokens) < n:
                continue
            found = self.last_end.get(tuple(tokens[len(tokens) - n:]))
            if found is not None:
                return list(tokens[found + 1:found + 1 + k])
        return []


def check_drafts(matcher: Matcher, drafts: Sequence[int]) -> list[int]:
    """The longest prefix of `drafts` the grammar accepts from its current state (state unchanged)."""
    kept: list[int] = []
    for token in drafts:
        if matcher.is_terminated() or not matcher.accept_token(token):
            break
        kept.append(token)
    if kept:
        matcher.rollback(len(kept))
    return kept


def fill_draft_rows(matcher: Matcher, bitmask: torch.Tensor, first_row: int, drafts: Sequence[int]) -> None:
    """Rows first_row .. first_row + len(drafts): the grammar's mask before each draft and after
    the last (the drafts were checked, so the matcher accepts them; its state is restored)."""
    matcher.fill_bitmask(bitmask, first_row)
    for i, token in enumerate(drafts):
        matcher.accept_token(token)
        matcher.fill_bitmask(bitmask, first_row + i + 1)
    if drafts:
        matcher.rollback(len(drafts))


def emitted_tokens(sampled: Sequence[int], drafts: Sequence[int]) -> list[int]:
    """sampled[i] was drawn after the drafts before i: keep drafts while they match, then the first
    sampled token that differs (or the token after the last draft)."""
    out: list[int] = []
    for i, token in enumerate(sampled):
        out.append(token)
        if i >= len(drafts) or token != drafts[i]:
            break
    return out


def row_groups(sampling: Sequence[Request]) -> list[tuple[Request, int, int]]:
    """Sampled rows (one entry per row, a request's rows adjacent) → (request, first row, rows)."""
    groups: list[tuple[Request, int, int]] = []
    for row, request in enumerate(sampling):
        if groups and groups[-1][0] is request:
            last, first, n = groups[-1]
            groups[-1] = (last, first, n + 1)
        else:
            groups.append((request, row, 1))
    return groups
