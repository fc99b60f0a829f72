"""engine/models/linear.py: the packed bf16 path gives exactly F.linear's results, for decode-sized
and prefill-sized inputs alike, with and without bias."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sluicegate.engine.models.linear import Linear


@pytest.mark.parametrize("rows", [1, 3, 32, 33, 200, 1024])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bit_identical_to_f_linear(rows: int, with_bias: bool) -> None:
    gen = torch.Generator().manual_seed(rows)
    weight = torch.randn(96, 64, generator=gen).to(torch.bfloat16)
    bias = torch.randn(96, generator=gen).to(torch.bfloat16) if with_bias else None
    x = torch.randn(rows, 64, generator=gen).to(torch.bfloat16)
    linear = Linear(weight, bias)
    assert torch.equal(linear(x), F.linear(x, weight, bias))


def test_fp32_weights_are_not_packed() -> None:
    assert Linear(torch.randn(8, 4)).packed is None


def test_a_packed_weight_is_the_only_copy_and_unpacks_exactly() -> None:
    weight = torch.randn(96, 64).to(torch.bfloat16)
    linear = Linear(weight)
    if linear.packed is None:
        pytest.skip("oneDNN bf16 packing is not available on this CPU")
    assert linear._plain is None
    assert torch.equal(linear.weight, weight)
