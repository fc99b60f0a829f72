"""Helpers shared by the attention kernels: block sizes, dtype-dependent dot settings."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def is_interpreted(kernel: object) -> bool:
    """True when triton decorated `kernel` for its CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(kernel).__name__ == "InterpretedFunction"


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 caches are the precise reference path: tf32 would cost ~1e-3 relative error.
    return "ieee" if dtype == torch.float32 else "tf32"


def dot_in_f32(dtype: torch.dtype, interpreted: bool) -> bool:
    # triton 3.9's interpreter multiplies bf16 operands as their raw uint16 bits in tl.dot, so
    # under the interpreter bf16 tiles are upcast first; on a GPU they stay bf16 (tensor cores).
    return interpreted and dtype == torch.bfloat16


@triton.jit
def tile_dot(a, b, acc, DOT_F32: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b, with fp32 accumulation."""
    if DOT_F32:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)
