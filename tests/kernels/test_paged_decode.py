"""Paged decode kernel vs the torch reference: GQA groups, partial blocks, split-K."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.attention import torch_backend as ref
from sluicegate.engine.attention.kernels.paged_decode import choose_num_splits, paged_decode
from tests.kernels.paged_cases import assert_close, make_batch, reference_output
from tests.kernels.runtime import DEVICE

# One token, a block exactly full, a block plus one, mid-block ends, five blocks (crosses tiles).
SEQ_LENS = [1, 16, 17, 40, 75]


def _decode(batch, num_splits: int, block_n: int = 16) -> torch.Tensor:  # type: ignore[no-untyped-def]
    ref.store_kv(batch.k_new, batch.v_new, batch.k_cache, batch.v_cache, batch.meta.slot_mapping)
    meta = batch.meta
    return paged_decode(batch.q, batch.k_cache, batch.v_cache, meta.block_tables, meta.seq_lens,
                        meta.max_seq_len, batch.scale, num_splits=num_splits, block_n=block_n)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("group", [1, 3, 8])
def test_decode_matches_reference(group: int, head_dim: int, dtype: torch.dtype) -> None:
    batch = make_batch([1] * len(SEQ_LENS), SEQ_LENS, num_kv_heads=2, group=group,
                       head_dim=head_dim, dtype=dtype, device=DEVICE, seed=group * head_dim)
    expected = reference_output(batch)
    assert_close(_decode(batch, num_splits=1), expected, dtype)


@pytest.mark.parametrize("num_splits", [2, 3, 8])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_split_k_matches_reference(num_splits: int, dtype: torch.dtype) -> None:
    # With 8 splits of 16 positions, the short sequences leave most splits empty.
    batch = make_batch([1] * len(SEQ_LENS), SEQ_LENS, num_kv_heads=2, group=3, head_dim=64,
                       dtype=dtype, device=DEVICE, seed=num_splits)
    expected = reference_output(batch)
    assert_close(_decode(batch, num_splits=num_splits), expected, dtype)


def test_fp16_and_odd_head_dim() -> None:
    batch = make_batch([1, 1, 1], [9, 33, 50], num_kv_heads=1, group=4, head_dim=80,
                       dtype=torch.float16, device=DEVICE, seed=7)
    expected = reference_output(batch)
    assert_close(_decode(batch, num_splits=2, block_n=32), expected, torch.float16)


def test_matches_the_reference_in_its_own_dtype() -> None:
    # The bf16 reference itself (not the fp32 truth), as the engine would compare backends.
    batch = make_batch([1] * 4, [5, 16, 31, 64], num_kv_heads=2, group=8, head_dim=64,
                       dtype=torch.bfloat16, device=DEVICE, seed=11)
    expected = reference_output(batch, torch.bfloat16)
    torch.testing.assert_close(_decode(batch, num_splits=1), expected, atol=3e-2, rtol=3e-2)


def test_choose_num_splits() -> None:
    # A big batch fills the GPU alone: no split.
    assert choose_num_splits(128, 8, 4096, num_sms=132, block_n=64) == 1
    # One sequence, long context: split up to the cap.
    assert choose_num_splits(1, 8, 32768, num_sms=132, block_n=64) == 32
    # One short sequence: never a split under 256 positions.
    assert choose_num_splits(1, 8, 700, num_sms=132, block_n=64) == 2
    assert choose_num_splits(1, 8, 100, num_sms=132, block_n=64) == 1
