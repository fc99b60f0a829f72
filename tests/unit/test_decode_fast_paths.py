"""The decode step's fast paths give the same numbers as the plain formulas they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.models.linear import Linear
from engine.models.rope import apply_rope, apply_rope_rolled, rope_cache, signed_sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rolled_rope_is_bit_identical_to_rotate_half(dtype: torch.dtype) -> None:
    cos, sin = rope_cache(64, 10000.0, None, 512, torch.device("cpu"), dtype)
    positions = torch.tensor([0, 5, 77, 511])
    qkv = torch.randn(4, (9 + 3 + 3) * 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    qk = qkv[:, : 12 * 64].view(4, 12, 64)  # strided view, as in the model
    got = apply_rope_rolled(qk, cos[positions].unsqueeze(1), signed_sin(sin)[positions].unsqueeze(1))
    want = apply_rope(qk, cos[positions], sin[positions])
    assert torch.equal(got, want)


@pytest.mark.parametrize("rows", [1, 3, 32, 130])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_matches_f_linear(rows: int, bias: bool) -> None:
    g = torch.Generator().manual_seed(rows)
    w = torch.randn(96, 64, generator=g).bfloat16()
    b = torch.randn(96, generator=g).bfloat16() if bias else None
    x = torch.randn(rows, 64, generator=g).bfloat16()
    with torch.inference_mode():
        got = Linear(w, b)(x)
    # bf16 on a CPU with oneDNN: the same kernel either way, so the same bits
    assert torch.equal(got, F.linear(x, w, b))


def test_linear_keeps_plain_weight_where_it_cannot_pack() -> None:
    w = torch.randn(8, 4)
    layer = Linear(w)
    assert layer.packed is None and layer.weight is w
    x = torch.randn(2, 4)
    assert torch.equal(layer(x), F.linear(x, w))
