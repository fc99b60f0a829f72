"""store_kv kernel vs the torch reference: exact copies, padded (-1) rows skipped."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.attention import torch_backend as ref
from sluicegate.engine.attention.kernels.store_kv import store_kv
from tests.kernels.runtime import DEVICE

BLOCK_SIZE = 16


def _caches(num_blocks: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
            seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shape = (num_blocks, BLOCK_SIZE, kv_heads, head_dim)
    return (torch.randn(shape, generator=gen).to(dtype=dtype, device=DEVICE),
            torch.randn(shape, generator=gen).to(dtype=dtype, device=DEVICE))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(("kv_heads", "head_dim"), [(1, 64), (2, 128), (3, 80)])
def test_store_kv_matches_reference(dtype: torch.dtype, kv_heads: int, head_dim: int) -> None:
    num_blocks, num_tokens = 5, 37  # tokens spill over several blocks, ending mid-block
    k_cache, v_cache = _caches(num_blocks, kv_heads, head_dim, dtype, seed=1)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    slots = torch.randperm(num_blocks * BLOCK_SIZE)[:num_tokens].to(device=DEVICE)
    k = torch.randn(num_tokens, kv_heads, head_dim).to(dtype=dtype, device=DEVICE)
    v = torch.randn(num_tokens, kv_heads, head_dim).to(dtype=dtype, device=DEVICE)
    store_kv(k, v, k_cache, v_cache, slots)
    ref.store_kv(k, v, ref_k, ref_v, slots)
    assert torch.equal(k_cache, ref_k)
    assert torch.equal(v_cache, ref_v)


def test_negative_slots_write_nothing() -> None:
    k_cache, v_cache = _caches(3, 2, 64, torch.float32, seed=2)
    before_k, before_v = k_cache.clone(), v_cache.clone()
    slots = torch.tensor([5, -1, 17, -1, 40], dtype=torch.int64, device=DEVICE)
    k = torch.randn(5, 2, 64, device=DEVICE)
    v = torch.randn(5, 2, 64, device=DEVICE)
    store_kv(k, v, k_cache, v_cache, slots)
    keep = slots >= 0
    ref.store_kv(k[keep], v[keep], before_k, before_v, slots[keep])
    assert torch.equal(k_cache, before_k)
    assert torch.equal(v_cache, before_v)


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.bfloat16])
def test_strided_inputs_from_a_fused_qkv(cache_dtype: torch.dtype) -> None:
    # k, v as views into one [tokens, (heads + 2 * kv_heads) * head_dim] projection output.
    tokens, heads, kv_heads, head_dim = 20, 4, 2, 64
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * head_dim, device=DEVICE)
    k = qkv[:, heads * head_dim: (heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim)
    v = qkv[:, (heads + kv_heads) * head_dim:].view(tokens, kv_heads, head_dim)
    assert not k.is_contiguous()
    k_cache, v_cache = _caches(4, kv_heads, head_dim, cache_dtype, seed=3)
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    slots = torch.arange(7, 7 + tokens, device=DEVICE)
    store_kv(k, v, k_cache, v_cache, slots)
    ref.store_kv(k, v, ref_k, ref_v, slots)
    if cache_dtype == torch.float32:
        assert torch.equal(k_cache, ref_k)
        assert torch.equal(v_cache, ref_v)
    else:
        # fp32 -> bf16 on store: the GPU rounds to nearest like torch; triton 3.9's interpreter
        # truncates, so allow one bf16 ulp (2^-7 relative) rather than exact equality.
        torch.testing.assert_close(k_cache, ref_k, atol=0, rtol=2**-7)
        torch.testing.assert_close(v_cache, ref_v, atol=0, rtol=2**-7)
