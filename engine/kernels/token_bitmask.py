"""apply_token_bitmask: grammar masks applied to the logits on the device, in place.

The grammar stage fills a packed bitmask on the host ([B, ceil(V/32)] int32, bit t%32 of word t//32
set = token t allowed). Unpacking it with torch ops materialises a [B, W, 32] int32 tensor and a
[B, V] bool mask; this kernel reads each 32-bit word once and writes -inf straight into the logits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _apply_token_bitmask_kernel(
    logits_ptr, bitmask_ptr, vocab_size, stride_lb, stride_bb,
    BLOCK_WORDS: tl.constexpr,
):
    # One program per (row, BLOCK_WORDS * 32 tokens): a [BLOCK_WORDS, 32] tile of logits.
    row = tl.program_id(0)
    word0 = tl.program_id(1) * BLOCK_WORDS
    words = word0 + tl.arange(0, BLOCK_WORDS)
    num_words = tl.cdiv(vocab_size, 32)
    packed = tl.load(bitmask_ptr + row * stride_bb + words, mask=words < num_words, other=-1)
    bits = tl.arange(0, 32)
    allowed = ((packed[:, None] >> bits[None, :]) & 1) != 0  # [BLOCK_WORDS, 32]
    tokens = words[:, None] * 32 + bits[None, :]
    ptrs = logits_ptr + row.to(tl.int64) * stride_lb + tokens
    # Only the banned entries are written: rows that are mostly allowed cost a read of the mask.
    tl.store(ptrs, tl.full((BLOCK_WORDS, 32), float("-inf"), logits_ptr.dtype.element_ty),
             mask=(~allowed) & (tokens < vocab_size))


def apply_token_bitmask_triton(logits: torch.Tensor, bitmask: torch.Tensor, block_words: int = 32) -> None:
    """logits [B, V] (float, last axis contiguous), bitmask [B, >= ceil(V/32)] int32 on the same
    device: banned logits become -inf in place."""
    rows, vocab = logits.shape
    if rows == 0:
        return
    if logits.stride(-1) != 1 or bitmask.stride(-1) != 1:
        raise ValueError("apply_token_bitmask needs the vocab axis contiguous (stride 1)")
    grid = (rows, triton.cdiv(triton.cdiv(vocab, 32), block_words))
    _apply_token_bitmask_kernel[grid](logits, bitmask, vocab, logits.stride(0), bitmask.stride(0),
                                      BLOCK_WORDS=block_words)
