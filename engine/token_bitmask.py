"""Grammar bitmasks on logits: the torch reference (any device) and the triton kernel on GPUs.

A bitmask row is ceil(V/32) int32 words; bit t%32 of word t//32 set = token t allowed; a row of -1
words allows everything (an unconstrained request sharing the batch).
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def unpack_bitmask(bitmask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """[B, W] int32 -> [B, vocab_size] bool, bit t%32 of word t//32 = token t allowed."""
    shifts = torch.arange(32, dtype=torch.int32, device=bitmask.device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1  # [B, W, 32]
    return bits.flatten(1)[:, :vocab_size].bool()


def apply_token_bitmask_torch(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """logits [B, V] in place: banned tokens -> -inf."""
    logits.masked_fill_(~unpack_bitmask(bitmask, logits.shape[-1]), NEG_INF)


def apply_token_bitmask_(logits: torch.Tensor, bitmask: torch.Tensor) -> None:
    """In place, on the logits' device (the bitmask must already be there). Triton on CUDA/XPU,
    torch elsewhere: on CPU the torch ops are as fast as the interpreter is slow."""
    if bitmask.device != logits.device:
        raise ValueError(f"bitmask on {bitmask.device}, logits on {logits.device}: copy it first")
    if logits.device.type in ("cuda", "xpu"):
        from sluicegate.engine.kernels.token_bitmask import apply_token_bitmask_triton

        apply_token_bitmask_triton(logits, bitmask)
    else:
        apply_token_bitmask_torch(logits, bitmask)
