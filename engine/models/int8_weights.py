"""8-bit weights read as they are stored, for decode steps of one row on CPU.

A GGUF's Q8_0 tensors hold each group of 32 weights as int8 codes q in [-127, 127] with one scale
d (w = q * d); the default model's tied embedding / output projection (49152 x 576) is one, and at
one row its bf16 copy (57 MB) is a quarter of a decode step's time. The C++ kernel
`torch.ops.sluicegate.int8_linear` (engine/kernels/csrc/int8_linear.cpp) reads the codes (28 MB)
and scales instead: ~1.0-1.2 vs 1.9-2.2 ms for that projection at one row with AVX512-BF16 dot
products (2.1 ms without them), slower from two rows on (bench/results/step_profile.md), so it
serves calls of INT8_MAX_ROWS row.

Only weights whose every group is exactly its codes times d = max|w| / 127 are kept (Q8_0 layers;
a bf16 or fp32 checkpoint, or another format, is not), so the kernel computes with the stored
weights exactly, in fp32: closer to them than the bf16 copy, which rounds every weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sluicegate.engine.models.weight_groups import find_in_groups

GROUP = 32  # weights per scale (Q8_0 block size)
INT8_MAX_ROWS = 1  # rows (tokens) up to which a call reads the 8-bit weight
_GRID_TOLERANCE = 1e-3  # largest |q * d - w| as a share of d


@dataclass(frozen=True)
class Int8Weight:
    """A [N, K] weight as int8 codes with one float32 scale per group of 32 along K."""

    codes: torch.Tensor  # [N, K] int8
    scales: torch.Tensor  # [N, K / GROUP] float32: w = codes * scale

    @property
    def max_rows(self) -> int:
        return INT8_MAX_ROWS

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """x [M, K] (M <= 8) -> x @ W.T [M, N] in x's dtype."""
        return torch.ops.sluicegate.int8_linear(x, self.codes, self.scales)


def exact_int8(weight: torch.Tensor) -> Int8Weight | None:
    """Keep weight [N, K] (float32, as converted) as int8 codes when every group of 32 along K is
    q * d with integer q in [-127, 127] and d = max|w| / 127 (how llama.cpp quantizes Q8_0); None
    when any group is not."""
    n, k = weight.shape
    found = find_in_groups(weight, GROUP, _codes)
    if found is None:
        return None
    codes, scales = found
    return Int8Weight(codes.reshape(n, k).contiguous(), scales.contiguous())


def _codes(groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """groups [R, C, G] -> (codes [R, C, G] int8, scales [R, C] float32), or None off the grid."""
    scale = groups.abs().amax(dim=-1, keepdim=True) / 127  # [R, C, 1]
    safe = scale.clamp(min=torch.finfo(torch.float32).tiny)
    codes = (groups / safe).round_()  # [R, C, G], within [-127, 127] by construction
    error = (codes * scale - groups).abs().amax(dim=-1, keepdim=True)
    if bool((error > _GRID_TOLERANCE * safe).any()):
        return None
    return codes.to(torch.int8), scale.squeeze(-1)
