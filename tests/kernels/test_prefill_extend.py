"""Varlen prefill/extend kernel vs the torch reference: fresh prefills, extends from mid-block,
chunked prefills and decode rows mixed in one batch."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.attention import torch_backend as ref
from sluicegate.engine.attention.kernels.prefill_extend import prefill_extend
from tests.kernels.paged_cases import PagedBatch, assert_close, make_batch, reference_output
from tests.kernels.runtime import DEVICE

# (query_len, seq_len): decode, extend from mid-block (prefix hit of 21 tokens), fresh prefill
# over three blocks, a second decode at a block boundary, a middle chunk of a long prompt.
MIXED = [(1, 29), (30, 51), (37, 37), (1, 32), (16, 48)]


def _prefill(batch: PagedBatch, block_m: int = 16, block_n: int = 32) -> torch.Tensor:
    ref.store_kv(batch.k_new, batch.v_new, batch.k_cache, batch.v_cache, batch.meta.slot_mapping)
    meta = batch.meta
    return prefill_extend(batch.q, batch.k_cache, batch.v_cache, meta.block_tables, meta.seq_lens,
                          meta.query_start_loc, batch.scale, block_m=block_m, block_n=block_n)


def _batch(cases: list[tuple[int, int]], **kw: object) -> PagedBatch:
    return make_batch([q for q, _ in cases], [s for _, s in cases], device=DEVICE, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("head_dim", [64, 128])
@pytest.mark.parametrize("group", [1, 3, 8])
def test_mixed_batch_matches_reference(group: int, head_dim: int, dtype: torch.dtype) -> None:
    batch = _batch(MIXED, num_kv_heads=2, group=group, head_dim=head_dim, dtype=dtype,
                   seed=group + head_dim)
    assert_close(_prefill(batch), reference_output(batch), dtype)


@pytest.mark.parametrize(("cases", "name"), [
    ([(21, 21), (16, 16), (40, 40)], "fresh prefills"),
    ([(9, 30), (1, 17), (24, 40)], "extends starting mid-block"),
    ([(5, 5)], "a single short prompt"),
])
def test_shapes(cases: list[tuple[int, int]], name: str) -> None:
    batch = _batch(cases, num_kv_heads=1, group=4, head_dim=64, dtype=torch.float32, seed=len(name))
    assert_close(_prefill(batch), reference_output(batch), torch.float32)


@pytest.mark.parametrize(("block_m", "block_n"), [(64, 64), (32, 16), (128, 32)])
def test_tile_sizes(block_m: int, block_n: int) -> None:
    batch = _batch(MIXED, num_kv_heads=2, group=3, head_dim=64, dtype=torch.bfloat16, seed=block_m)
    assert_close(_prefill(batch, block_m, block_n), reference_output(batch), torch.bfloat16)


def test_fp16_odd_head_dim_and_group_of_16() -> None:
    # group 16 > block_m 16 forces a 16-row tile of one token; head_dim 80 is padded to 128.
    batch = _batch([(3, 20), (12, 12)], num_kv_heads=1, group=16, head_dim=80, dtype=torch.float16,
                   seed=5)
    assert_close(_prefill(batch, block_m=16), reference_output(batch), torch.float16)
