"""Paged decode attention: one new query token per sequence, read from the paged KV cache.

One program per (sequence, kv head, split): it loads the GQA group's query heads as one
[BLOCK_G, head_dim] tile, so each key/value tile is read from memory once per group, and walks the
sequence's positions BLOCK_N at a time through its block table (tiles are gathered per token, so
BLOCK_N is independent of the cache's block size). Softmax is online, in fp32, in base 2.

Split-K: with few (sequence, kv head) pairs and long contexts, the positions are cut into
`num_splits` ranges that run in parallel; each writes an unnormalised partial (acc, max, sum) and
a second kernel merges them. With one split the first kernel writes the output directly.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from sluicegate.engine.attention.kernels.common import (
    dot_in_f32,
    dot_precision,
    is_interpreted,
    next_pow2,
    tile_dot,
)

LOG2E = 1.4426950408889634


@triton.jit
def _paged_decode_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, seq_lens_ptr, out_ptr,
    part_acc_ptr, part_m_ptr, part_l_ptr,
    qk_scale, positions_per_split,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_bt,
    stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
    GROUP: tl.constexpr, BLOCK_G: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr,
    DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + seq)
    start = split * positions_per_split
    end = tl.minimum(seq_len, start + positions_per_split)

    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    g_mask = g < GROUP
    d_mask = d < HEAD_DIM
    heads = kv_head * GROUP + g
    # q: [BLOCK_G, BLOCK_D], rows past the group are zero (and never stored)
    q = tl.load(q_ptr + seq * stride_qt + heads[:, None] * stride_qh + d[None, :],
                mask=g_mask[:, None] & d_mask[None, :], other=0.0)

    m_i = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    table = block_tables_ptr + seq.to(tl.int64) * stride_bt
    for tile in range(start, end, BLOCK_N):
        pos = tile + n
        pos_mask = pos < end
        page = tl.load(table + pos // PAGE_SIZE, mask=pos_mask, other=0).to(tl.int64)
        k_rows = k_cache_ptr + page * stride_kb + (pos % PAGE_SIZE) * stride_ks + kv_head * stride_kh
        v_rows = v_cache_ptr + page * stride_vb + (pos % PAGE_SIZE) * stride_vs + kv_head * stride_vh
        # k_t: [BLOCK_D, BLOCK_N], v: [BLOCK_N, BLOCK_D]
        k_t = tl.load(k_rows[None, :] + d[:, None], mask=pos_mask[None, :] & d_mask[:, None], other=0.0)
        v = tl.load(v_rows[:, None] + d[None, :], mask=pos_mask[:, None] & d_mask[None, :], other=0.0)
        s = tile_dot(q, k_t.to(q.dtype), tl.zeros([BLOCK_G, BLOCK_N], tl.float32), DOT_F32, PRECISION)
        s = tl.where(pos_mask[None, :], s * qk_scale, float("-inf"))
        # Every tile holds at least one position < end, so m_new is finite.
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tile_dot(p.to(q.dtype), v.to(q.dtype), acc * alpha[:, None], DOT_F32, PRECISION)
        m_i = m_new

    if SPLIT:
        # partials: acc [num_seqs, num_heads, num_splits, head_dim], m/l [num_seqs, num_heads, num_splits]
        num_splits = tl.num_programs(2)
        row = (seq * tl.num_programs(1) * GROUP + heads).to(tl.int64) * num_splits + split
        tl.store(part_acc_ptr + row[:, None] * HEAD_DIM + d[None, :], acc,
                 mask=g_mask[:, None] & d_mask[None, :])
        tl.store(part_m_ptr + row, m_i, mask=g_mask)
        tl.store(part_l_ptr + row, l_i, mask=g_mask)
    else:
        l_safe = tl.where(l_i > 0, l_i, 1.0)  # an empty sequence (padding) yields zeros, not NaN
        out = acc / l_safe[:, None]
        tl.store(out_ptr + seq * stride_ot + heads[:, None] * stride_oh + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=g_mask[:, None] & d_mask[None, :])


@triton.jit
def _merge_splits_kernel(
    part_acc_ptr, part_m_ptr, part_l_ptr, out_ptr, num_splits, stride_ot, stride_oh,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_S: tl.constexpr,
):
    # One program per (sequence, query head): merge its num_splits partial softmaxes.
    seq = tl.program_id(0)
    head = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    s_mask = s < num_splits
    row = (seq * tl.num_programs(1) + head).to(tl.int64) * num_splits + s
    m = tl.load(part_m_ptr + row, mask=s_mask, other=float("-inf"))
    sums = tl.load(part_l_ptr + row, mask=s_mask, other=0.0)
    m_max = tl.max(m, 0)
    m_max = tl.where(m_max == float("-inf"), 0.0, m_max)
    w = tl.exp2(m - m_max)  # empty splits have m = -inf, so weight 0
    total = tl.sum(sums * w, 0)
    total = tl.where(total > 0, total, 1.0)
    acc = tl.load(part_acc_ptr + row[:, None] * HEAD_DIM + d[None, :],
                  mask=s_mask[:, None] & (d[None, :] < HEAD_DIM), other=0.0)
    out = tl.sum(acc * w[:, None], 0) / total
    tl.store(out_ptr + seq * stride_ot + head * stride_oh + d, out.to(out_ptr.dtype.element_ty),
             mask=d < HEAD_DIM)


def choose_num_splits(num_seqs: int, num_kv_heads: int, max_seq_len: int, num_sms: int,
                      block_n: int, min_positions_per_split: int = 256, max_splits: int = 32) -> int:
    """Enough (sequence, kv head, split) programs to fill ~2 waves of the GPU's SMs, but never a
    split shorter than min_positions_per_split (the merge would cost more than it saves)."""
    pairs = max(1, num_seqs * num_kv_heads)
    wanted = triton.cdiv(2 * num_sms, pairs)
    by_length = max(1, max_seq_len // max(min_positions_per_split, block_n))
    return max(1, min(wanted, by_length, max_splits))


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 block_tables: torch.Tensor, seq_lens: torch.Tensor, max_seq_len: int, scale: float,
                 num_splits: int = 1, block_n: int = 64, out: torch.Tensor | None = None) -> torch.Tensor:
    """q: [num_seqs, num_heads, head_dim] (one token per sequence) -> [num_seqs, num_heads, head_dim].

    block_tables: [num_seqs, max_blocks] int32; seq_lens: [num_seqs] int32 (context incl. this token).
    """
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}")
    if q.stride(-1) != 1 or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("paged_decode needs the head_dim axis contiguous (stride 1)")
    group = num_heads // num_kv_heads
    if out is None:
        out = torch.empty((num_seqs, num_heads, head_dim), dtype=q.dtype, device=q.device)
    if num_seqs == 0:
        return out
    block_n = max(16, next_pow2(block_n))
    num_splits = max(1, min(num_splits, triton.cdiv(max(max_seq_len, 1), block_n)))
    positions_per_split = triton.cdiv(triton.cdiv(max(max_seq_len, 1), num_splits), block_n) * block_n
    split = num_splits > 1
    if split:
        part_acc = torch.empty((num_seqs, num_heads, num_splits, head_dim), dtype=torch.float32,
                               device=q.device)
        part_m = torch.empty((num_seqs, num_heads, num_splits), dtype=torch.float32, device=q.device)
        part_l = torch.empty_like(part_m)
    else:
        part_acc = part_m = part_l = out  # unused: the SPLIT=False branch never touches them
    _paged_decode_kernel[(num_seqs, num_kv_heads, num_splits)](
        q, k_cache, v_cache, block_tables, seq_lens, out, part_acc, part_m, part_l,
        scale * LOG2E, positions_per_split,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), block_tables.stride(0),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        GROUP=group, BLOCK_G=max(16, next_pow2(group)), HEAD_DIM=head_dim,
        BLOCK_D=max(16, next_pow2(head_dim)), PAGE_SIZE=k_cache.shape[1], BLOCK_N=block_n,
        SPLIT=split, DOT_F32=dot_in_f32(q.dtype, is_interpreted(_paged_decode_kernel)),
        PRECISION=dot_precision(q.dtype),
    )
    if split:
        _merge_splits_kernel[(num_seqs, num_heads)](
            part_acc, part_m, part_l, out, num_splits, out.stride(0), out.stride(1),
            HEAD_DIM=head_dim, BLOCK_D=next_pow2(head_dim), BLOCK_S=next_pow2(num_splits),
        )
    return out
