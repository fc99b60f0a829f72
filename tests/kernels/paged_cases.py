"""Random paged-KV batches for the kernel tests, and the torch reference's answer for them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sluicegate.engine.attention import torch_backend as ref
from sluicegate.engine.attention.metadata import AttentionMetadata

BLOCK_SIZE = 16


@dataclass(frozen=True)
class PagedBatch:
    q: torch.Tensor  # [num_tokens, num_heads, head_dim]
    k_new: torch.Tensor  # [num_tokens, num_kv_heads, head_dim]
    v_new: torch.Tensor
    k_cache: torch.Tensor  # [num_blocks, block_size, num_kv_heads, head_dim], cached prefixes filled
    v_cache: torch.Tensor
    meta: AttentionMetadata
    scale: float


def make_batch(query_lens: list[int], seq_lens: list[int], *, num_kv_heads: int, group: int,
               head_dim: int, dtype: torch.dtype, device: torch.device, block_size: int = BLOCK_SIZE,
               spare_blocks: int = 3, seed: int = 0) -> PagedBatch:
    """Sequence i brings query_lens[i] new tokens at the end of a seq_lens[i]-token context.

    Blocks are handed out in a shuffled order (block 0 included), so tables are not monotone and a
    wrong page lookup reads garbage; every cache slot starts as noise, and each sequence's cached
    prefix (its first seq_len - query_len positions) is written before the step.
    """
    gen = torch.Generator().manual_seed(seed)
    needed = [(s + block_size - 1) // block_size for s in seq_lens]
    num_blocks = sum(needed) + spare_blocks
    order = torch.randperm(num_blocks, generator=gen).tolist()
    tables, used = [], 0
    for n in needed:
        tables.append(order[used: used + n])
        used += n

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(dtype=dtype, device=device)

    k_cache = rand(num_blocks, block_size, num_kv_heads, head_dim)
    v_cache = rand(num_blocks, block_size, num_kv_heads, head_dim)
    prefix_lens = [s - q for q, s in zip(query_lens, seq_lens, strict=True)]
    if sum(prefix_lens):
        prefix = AttentionMetadata.build(prefix_lens, prefix_lens, tables, block_size, device)
        n = sum(prefix_lens)
        ref.store_kv(rand(n, num_kv_heads, head_dim), rand(n, num_kv_heads, head_dim),
                     k_cache, v_cache, prefix.slot_mapping)
    num_tokens = sum(query_lens)
    return PagedBatch(
        q=rand(num_tokens, num_kv_heads * group, head_dim),
        k_new=rand(num_tokens, num_kv_heads, head_dim),
        v_new=rand(num_tokens, num_kv_heads, head_dim),
        k_cache=k_cache, v_cache=v_cache,
        meta=AttentionMetadata.build(query_lens, seq_lens, tables, block_size, device),
        scale=head_dim ** -0.5,
    )


def reference_output(batch: PagedBatch, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The torch backend's store_kv + attend on copies of the batch, computed in `dtype`."""
    k_cache = batch.k_cache.to(dtype)
    v_cache = batch.v_cache.to(dtype)
    ref.store_kv(batch.k_new.to(dtype), batch.v_new.to(dtype), k_cache, v_cache, batch.meta.slot_mapping)
    return ref.attend(batch.q.to(dtype), k_cache, v_cache, batch.meta, batch.scale)


def tolerance(dtype: torch.dtype) -> float:
    """atol = rtol against the fp32 reference: bf16 keeps 8 mantissa bits (2^-8 relative), fp16 11."""
    return {torch.bfloat16: 2e-2, torch.float16: 3e-3}.get(dtype, 1e-4)


def assert_close(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    assert not torch.isnan(got).any(), "NaN in kernel output"
    tol = tolerance(dtype)
    torch.testing.assert_close(got.float(), expected.float(), atol=tol, rtol=tol)
