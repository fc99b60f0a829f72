"""Variable-length prefill / extend attention over the paged KV cache.

Sequence i owns query rows query_start_loc[i] : query_start_loc[i+1]; its new token j sits at
position p = seq_lens[i] - query_len_i + j and attends to cached and new positions 0..p, all read
from the paged cache (store_kv ran first). A fresh prefill, a prefix-cache hit that extends from
mid-block, a prefill chunk and a decode row (query_len 1) all take this one path.

One program per (query tile, kv head). A tile holds BLOCK_Q query tokens of one sequence times the
GQA group's GROUP query heads, flattened into BLOCK_M = BLOCK_Q * GROUP rows (padded to a power of
2), so each gathered key/value tile serves the whole group. Tiles are numbered per sequence as
query_start_loc[i] // BLOCK_Q + i + local_tile; the program finds its sequence by binary search, so
the grid needs only host-known sizes (num_tokens // BLOCK_Q + num_seqs tiles), never a sync.
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
def _find_seq(query_start_loc_ptr, tile, num_seqs, BLOCK_Q: tl.constexpr):
    """The last sequence i whose first tile number query_start_loc[i] // BLOCK_Q + i <= tile."""
    lo = 0
    hi = num_seqs
    while lo < hi:
        mid = (lo + hi) // 2
        first_tile = tl.load(query_start_loc_ptr + mid) // BLOCK_Q + mid
        if first_tile <= tile:
            lo = mid + 1
        else:
            hi = mid
    return lo - 1


@triton.jit
def _prefill_extend_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, seq_lens_ptr, query_start_loc_ptr, out_ptr,
    qk_scale, num_seqs,
    stride_qt, stride_qh, stride_ot, stride_oh, stride_bt,
    stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
    GROUP: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, PAGE_SIZE: tl.constexpr, BLOCK_N: tl.constexpr,
    DOT_F32: tl.constexpr, PRECISION: tl.constexpr,
):
    tile_id = tl.program_id(0)
    kv_head = tl.program_id(1)
    seq = _find_seq(query_start_loc_ptr, tile_id, num_seqs, BLOCK_Q)
    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    local_tile = tile_id - (q_start // BLOCK_Q + seq)
    if local_tile * BLOCK_Q >= q_len:
        return  # a gap in the tile numbering
    seq_len = tl.load(seq_lens_ptr + seq)
    context_len = seq_len - q_len  # positions already cached before this step

    # Row r of the tile is query token r // GROUP of the tile, query head kv_head * GROUP + r % GROUP.
    r = tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    tok = local_tile * BLOCK_Q + r // GROUP  # token index within the sequence's new tokens
    head = kv_head * GROUP + r % GROUP
    row_mask = (r // GROUP < BLOCK_Q) & (tok < q_len)
    d_mask = d < HEAD_DIM
    q_pos = context_len + tok  # [BLOCK_M] absolute position of each row's token
    q_rows = (q_start + tok).to(tl.int64)
    q = tl.load(q_ptr + q_rows[:, None] * stride_qt + head[:, None] * stride_qh + d[None, :],
                mask=row_mask[:, None] & d_mask[None, :], other=0.0)  # [BLOCK_M, BLOCK_D]

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    table = block_tables_ptr + seq.to(tl.int64) * stride_bt
    # Keys up to the tile's last query position (causal), never past the sequence.
    end = tl.minimum(seq_len, context_len + (local_tile + 1) * BLOCK_Q)
    for tile in range(0, end, BLOCK_N):
        pos = tile + n
        pos_mask = pos < end
        page = tl.load(table + pos // PAGE_SIZE, mask=pos_mask, other=0).to(tl.int64)
        k_rows = k_cache_ptr + page * stride_kb + (pos % PAGE_SIZE) * stride_ks + kv_head * stride_kh
        v_rows = v_cache_ptr + page * stride_vb + (pos % PAGE_SIZE) * stride_vs + kv_head * stride_vh
        k_t = tl.load(k_rows[None, :] + d[:, None], mask=pos_mask[None, :] & d_mask[:, None], other=0.0)
        v = tl.load(v_rows[:, None] + d[None, :], mask=pos_mask[:, None] & d_mask[None, :], other=0.0)
        s = tile_dot(q, k_t.to(q.dtype), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), DOT_F32, PRECISION)
        visible = pos_mask[None, :] & (pos[None, :] <= q_pos[:, None])  # [BLOCK_M, BLOCK_N]
        s = tl.where(visible, s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # Position 0 is visible to every row, so after the first tile m_new is finite; the guard
        # keeps a fully masked row (never expected) at zeros rather than NaN.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tile_dot(p.to(q.dtype), v.to(q.dtype), acc * alpha[:, None], DOT_F32, PRECISION)
        m_i = m_new

    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(out_ptr + q_rows[:, None] * stride_ot + head[:, None] * stride_oh + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=row_mask[:, None] & d_mask[None, :])


def prefill_extend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                   block_tables: torch.Tensor, seq_lens: torch.Tensor, query_start_loc: torch.Tensor,
                   scale: float, block_m: int = 64, block_n: int = 64,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """q: [num_tokens, num_heads, head_dim] (all sequences back to back) -> same shape.

    block_tables: [num_seqs, max_blocks] int32; seq_lens: [num_seqs] int32;
    query_start_loc: [num_seqs + 1] int32 cumulative query lengths.
    """
    num_tokens, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    num_seqs = seq_lens.shape[0]
    if num_heads % num_kv_heads:
        raise ValueError(f"num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}")
    if q.stride(-1) != 1 or k_cache.stride(-1) != 1 or v_cache.stride(-1) != 1:
        raise ValueError("prefill_extend needs the head_dim axis contiguous (stride 1)")
    group = num_heads // num_kv_heads
    if out is None:
        out = torch.empty((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    if num_tokens == 0 or num_seqs == 0:
        return out
    block_m = max(16, next_pow2(block_m), next_pow2(group))
    block_q = block_m // group
    num_tiles = num_tokens // block_q + num_seqs  # upper bound on the per-sequence tile numbering
    _prefill_extend_kernel[(num_tiles, num_kv_heads)](
        q, k_cache, v_cache, block_tables, seq_lens, query_start_loc, out,
        scale * LOG2E, num_seqs,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), block_tables.stride(0),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        GROUP=group, BLOCK_Q=block_q, BLOCK_M=block_m, HEAD_DIM=head_dim,
        BLOCK_D=max(16, next_pow2(head_dim)), PAGE_SIZE=k_cache.shape[1],
        BLOCK_N=max(16, next_pow2(block_n)),
        DOT_F32=dot_in_f32(q.dtype, is_interpreted(_prefill_extend_kernel)),
        PRECISION=dot_precision(q.dtype),
    )
    return out
