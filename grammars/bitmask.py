"""Batched bitmask work for the engine's step: fill every constrained row once, apply to logits.

Bitmasks are int32 [batch, ceil(vocab/32)] on CPU: bit (t % 32) of word (t // 32) = token t allowed.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import llguidance
import llguidance.torch
import torch

from sluicegate.grammars.backend import Matcher
from sluicegate.grammars.llguidance_backend import LLGuidanceMatcher


@functools.lru_cache(maxsize=1)
def _executor() -> llguidance.LLExecutor:
    # llguidance's own thread pool; it computes all rows with the GIL released
    return llguidance.LLExecutor(num_threads=max(1, min(8, (os.cpu_count() or 2) - 1)))


def fill_bitmasks(matchers: Sequence[Matcher], bitmask: torch.Tensor, rows: Sequence[int]) -> None:
    """Write matchers[i]'s mask into bitmask[rows[i]]; other rows are left as they are.

    llguidance matchers are filled together in one parallel call; any others one by one.
    """
    # bitmask: [batch, ceil(vocab/32)] int32, CPU, contiguous
    if len(matchers) != len(rows):
        raise ValueError(f"{len(matchers)} matchers but {len(rows)} rows")
    batched = [(m.inner, row) for m, row in zip(matchers, rows, strict=True) if isinstance(m, LLGuidanceMatcher)]
    if len(batched) > 1:
        llguidance.torch.fill_next_token_bitmask_par(_executor(), batched, bitmask)
    elif batched:
        inner, row = batched[0]
        llguidance.torch.fill_next_token_bitmask(inner, bitmask, row)
    for matcher, row in zip(matchers, rows, strict=True):
        if not isinstance(matcher, LLGuidanceMatcher):
            matcher.fill_bitmask(bitmask, row)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Reference (any device): disallowed tokens' logits → -inf, in place; returns logits."""
    # logits: [batch, vocab]; bitmask: [batch, ceil(vocab/32)] int32
    batch, vocab = logits.shape
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.to(logits.device).unsqueeze(-1) >> shifts.to(logits.device)) & 1  # [batch, words, 32]
    allowed = bits.reshape(batch, -1)[:, :vocab].bool()  # [batch, vocab]
    return logits.masked_fill_(~allowed, float("-inf"))


def token_allowed(bitmask: torch.Tensor, row: int, token_id: int) -> bool:
    return bool((int(bitmask[row, token_id // 32]) >> (token_id % 32)) & 1)
