"""4-bit weights read as they are stored, for decode steps of a few rows on CPU.

A GGUF's Q4_1 tensors hold each group of 32 weights as 4-bit codes q with a scale d and an offset
m (w = q * d + m); the converted checkpoint keeps them dequantized in float32, and the engine
computes in bf16. A decode step of one row reads every weight once, so it costs what reading them
costs: 269 MB a token for the default model in bf16, ~70 MB in 4 bits. torch's CPU weight-only
kernel (`aten._weight_int4pack_mm_for_cpu`, groups of 32, w = (q - 8) * scale + zero) reads the
4-bit codes directly.

Only weights whose every group lies exactly on a 4-bit grid are packed (Q4_0, Q4_1 and Q4_K
layers do; Q5/Q6/Q8 layers and bf16 checkpoints do not), so packing loses nothing beyond storing
each group's scale and zero in bf16. Qwen2.5-Coder-0.5B's Q4_K_M file, for one, stores only half
its down projections in 4 bits (the rest Q5_0, Q6_K, Q8_0): those pack, the others stay bf16. The kernel is faster than the bf16 matmul at 1 row and even at ~8, then
slower (bench/results/step_profile.md), so Linear uses it for up to INT4_MAX_ROWS rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sluicegate.engine.models.weight_groups import find_in_groups

GROUP = 32  # weights per scale and zero (Q4_0 / Q4_1 block size)
INT4_MAX_ROWS = 4  # rows (tokens) up to which a call reads the 4-bit weight
_GRID_TOLERANCE = 1e-3  # largest |dequantized - weight| on a grid, as a share of the group's step


@dataclass(frozen=True)
class Int4Weight:
    """A [N, K] weight as 4-bit codes in torch's CPU int4 layout, with per-group scale and zero."""

    packed: torch.Tensor  # opaque int4 layout of the codes q [N, K], 0..15
    scales_zeros: torch.Tensor  # [K / GROUP, N, 2] bf16: w = (q - 8) * scale + zero

    @property
    def max_rows(self) -> int:
        return INT4_MAX_ROWS

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] bf16 -> x @ W.T [M, N] bf16."""
        return torch.ops.aten._weight_int4pack_mm_for_cpu(x, self.packed, GROUP, self.scales_zeros)


def int4_available() -> bool:
    return hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and hasattr(
        torch.ops.aten, "_convert_weight_to_int4pack_for_cpu")


def exact_int4(weight: torch.Tensor) -> Int4Weight | None:
    """Pack weight [N, K] (float32, as converted) when each group of 32 along K lies on a grid of at
    most 16 evenly spaced values; None when any group does not (packing would then round).

    Q4_0, Q4_1 and Q4_K groups pass; Q5, Q6 and Q8 groups span more than 16 levels and fail, and
    so does a bf16 or fp32 checkpoint.
    """
    n, k = weight.shape
    grid = find_in_groups(weight, GROUP, _grid)
    if grid is None:
        return None
    codes, step, lo = grid
    zero = lo + 8 * step  # the kernel centres the codes: (q - 8) * step + zero = q * step + lo
    scales_zeros = torch.cat([step, zero], dim=-1).to(torch.bfloat16).transpose(0, 1).contiguous()
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.reshape(n, k).to(torch.int32), 1)
    return Int4Weight(packed, scales_zeros)


def _grid(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """groups [R, C, G] -> (codes [R, C, G] in 0..15, step [R, C, 1], origin [R, C, 1]) with
    codes * step + origin == groups within the tolerance, or None.

    A group's values run from its minimum to its maximum in (max - min) / levels steps for some
    whole number of levels up to 15: 15 when its codes reach both ends (the common case, tried on
    all groups), fewer otherwise (tried on the groups left)."""
    lo = groups.amin(dim=-1, keepdim=True)
    span = groups.amax(dim=-1, keepdim=True) - lo
    step = torch.empty_like(span)
    codes = torch.empty_like(groups)
    left = torch.ones(span.shape, dtype=torch.bool)  # [R, C, 1] groups without a grid yet
    for levels in range(15, 0, -1):
        sub = left.squeeze(-1)  # [R, C]
        values, origin = groups[sub], lo[sub]  # [m, G], [m, 1]
        trial = (span[sub] / levels).clamp(min=torch.finfo(torch.float32).tiny)  # [m, 1]
        trial_codes = ((values - origin) / trial).round_()  # [m, G]
        error = (trial_codes * trial + origin - values).abs().amax(dim=-1, keepdim=True)
        fits = (error <= _GRID_TOLERANCE * trial).squeeze(-1)  # [m]
        where = sub.nonzero(as_tuple=True)
        hit = tuple(i[fits] for i in where)
        step[hit] = trial[fits]
        codes[hit] = trial_codes[fits]
        left[hit] = False
        if not bool(left.any()):
            return codes, step, lo
    return None
