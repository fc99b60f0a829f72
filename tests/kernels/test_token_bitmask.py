"""apply_token_bitmask (triton) vs the torch reference: same -inf entries, untouched elsewhere."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.kernels.token_bitmask import apply_token_bitmask_triton
from sluicegate.engine.token_bitmask import apply_token_bitmask_torch
from tests.kernels.runtime import DEVICE


@pytest.mark.parametrize("vocab", [31, 32, 1000, 49152 + 17])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_the_torch_reference(vocab: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(vocab)
    rows, words = 4, -(-vocab // 32)
    bitmask = torch.randint(-2**31, 2**31 - 1, (rows, words), generator=gen, dtype=torch.int64).to(torch.int32)
    bitmask[1] = -1  # an unconstrained row: nothing banned
    bitmask[2] = 0  # everything banned
    bitmask[3, 0] = -(2**31) | 0b101  # the sign bit (token 31) and tokens 0 and 2
    logits = torch.randn(rows, vocab, generator=gen).to(dtype).to(DEVICE)
    expected = logits.clone()
    apply_token_bitmask_torch(expected, bitmask.to(DEVICE))
    got = logits.clone()
    apply_token_bitmask_triton(got, bitmask.to(DEVICE))
    assert torch.equal(got, expected)
    assert torch.equal(got[1], logits[1])
    assert bool(torch.isinf(got[2]).all())


def test_sign_bit_is_token_31() -> None:
    logits = torch.zeros(1, 64, device=DEVICE)
    bitmask = torch.tensor([[-(2**31), 0]], dtype=torch.int32, device=DEVICE)  # only token 31 allowed
    apply_token_bitmask_triton(logits, bitmask)
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == [31]


def test_strided_rows_and_a_wider_bitmask() -> None:
    # logits rows taken from a larger buffer (row stride > vocab); bitmask wider than needed
    big = torch.randn(3, 128, device=DEVICE)
    logits = big[:, :100]
    bitmask = torch.full((3, 8), 0x0F0F0F0F, dtype=torch.int32, device=DEVICE)
    expected = logits.clone()
    apply_token_bitmask_torch(expected, bitmask)
    apply_token_bitmask_triton(logits, bitmask)
    assert torch.equal(logits, expected)
    assert torch.isfinite(big[:, 100:]).all(), "nothing past the vocab is written"
