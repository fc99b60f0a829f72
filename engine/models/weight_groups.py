"""Finding a weight's stored low-bit codes: its groups along K, screened on a few rows first."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

Found = TypeVar("Found")
_SCREEN_ROWS = 64


def find_in_groups(weight: torch.Tensor, group: int,
                   find: Callable[[torch.Tensor], Found | None]) -> Found | None:
    """weight [N, K] -> find(groups [N, K / group, group] float32), or None when K is not a multiple
    of group or find says None. The first rows are tried alone, so that a weight that is not
    stored in that format is turned down without scanning all of it."""
    n, k = weight.shape
    if k % group:
        return None
    groups = weight.float().reshape(n, k // group, group)
    if n > _SCREEN_ROWS and find(groups[:_SCREEN_ROWS]) is None:
        return None
    return find(groups)
