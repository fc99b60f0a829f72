"""TritonAttentionBackend vs TorchAttentionBackend through the public contract: store_kv, then
attend, step after step, as the model runner calls them."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.attention.base import AttentionBackend
from sluicegate.engine.attention.metadata import AttentionMetadata
from sluicegate.engine.attention.torch_backend import TorchAttentionBackend
from sluicegate.engine.attention.triton_backend import TritonAttentionBackend
from tests.kernels.paged_cases import BLOCK_SIZE, assert_close
from tests.kernels.runtime import DEVICE


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=gen).to(DEVICE)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_prefill_then_decode_steps_match_the_torch_backend(dtype: torch.dtype) -> None:
    """Step 1: a fresh prefill and a prefix hit that extends from mid-block. Steps 2-4: both
    sequences decode (the decode kernel), then a third request joins mid-way (mixed batch)."""
    heads, kv_heads, head_dim, num_blocks = 6, 2, 64, 12
    gen = torch.Generator().manual_seed(0)
    tables = [[7, 2, 9], [4, 0, 11, 5], [3, 8]]
    cache_shape = (num_blocks, BLOCK_SIZE, kv_heads, head_dim)
    caches = {name: [torch.zeros(cache_shape, dtype=dtype, device=DEVICE) for _ in range(2)]
              for name in ("torch", "triton")}
    backends: dict[str, AttentionBackend] = {
        "torch": TorchAttentionBackend(),
        "triton": TritonAttentionBackend(decode_block_n=16, prefill_block_m=16),
    }
    # Sequence 1's first 21 tokens are a cached prefix (written by an earlier request).
    prefix = AttentionMetadata.build([21], [21], [tables[1]], BLOCK_SIZE, DEVICE)
    pk, pv = _rand(gen, 21, kv_heads, head_dim).to(dtype), _rand(gen, 21, kv_heads, head_dim).to(dtype)
    for k_cache, v_cache in caches.values():
        TorchAttentionBackend().store_kv(pk, pv, k_cache, v_cache, prefix.slot_mapping)

    steps = [([33, 19], [33, 40], 2), ([1, 1], [34, 41], 2), ([1, 1, 20], [35, 42, 20], 3),
             ([1, 1, 1], [36, 43, 21], 3)]
    for query_lens, seq_lens, num_seqs in steps:
        meta = AttentionMetadata.build(query_lens, seq_lens, tables[:num_seqs], BLOCK_SIZE, DEVICE)
        tokens = sum(query_lens)
        q = _rand(gen, tokens, heads, head_dim).to(dtype)
        k = _rand(gen, tokens, kv_heads, head_dim).to(dtype)
        v = _rand(gen, tokens, kv_heads, head_dim).to(dtype)
        outs = {}
        for name, backend in backends.items():
            k_cache, v_cache = caches[name]
            backend.store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
            outs[name] = backend.attend(q, k_cache, v_cache, meta, head_dim ** -0.5)
        assert torch.equal(caches["triton"][0], caches["torch"][0])
        assert torch.equal(caches["triton"][1], caches["torch"][1])
        # Both in `dtype`, so bf16 differs by the two backends' roundings (~2 bf16 ulps).
        tol = 3e-2 if dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(outs["triton"], outs["torch"], atol=tol, rtol=tol)


def test_strided_q_from_a_fused_projection() -> None:
    # q, k, v as views into one [tokens, (heads + 2 * kv_heads) * head_dim] projection output.
    tokens, heads, kv_heads, head_dim = 12, 8, 1, 64
    gen = torch.Generator().manual_seed(3)
    qkv = _rand(gen, tokens, (heads + 2 * kv_heads) * head_dim)
    q = qkv[:, : heads * head_dim].view(tokens, heads, head_dim)
    k = qkv[:, heads * head_dim: (heads + kv_heads) * head_dim].view(tokens, kv_heads, head_dim)
    v = qkv[:, (heads + kv_heads) * head_dim:].view(tokens, kv_heads, head_dim)
    meta = AttentionMetadata.build([tokens], [tokens], [[1]], BLOCK_SIZE, DEVICE)
    outs = []
    backends: tuple[AttentionBackend, ...] = (TorchAttentionBackend(), TritonAttentionBackend())
    for backend in backends:
        k_cache = torch.zeros(2, BLOCK_SIZE, kv_heads, head_dim, device=DEVICE)
        v_cache = torch.zeros_like(k_cache)
        backend.store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        outs.append(backend.attend(q, k_cache, v_cache, meta, 0.125))
    assert_close(outs[1], outs[0], torch.float32)
