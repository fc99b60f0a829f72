"""Reference attention on the paged cache in plain torch: runs on any device, and is the
ground truth the triton kernels are tested against."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sluicegate.engine.attention.metadata import AttentionMetadata
from sluicegate.engine.kernels import cpu_ops


def store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    # k, v: [num_tokens, num_kv_heads, head_dim]; caches: [num_blocks, block_size, num_kv_heads, head_dim]
    k_cache.flatten(0, 1).index_copy_(0, slot_mapping, k.to(k_cache.dtype))
    v_cache.flatten(0, 1).index_copy_(0, slot_mapping, v.to(v_cache.dtype))


def _gather_context(cache: torch.Tensor, blocks: torch.Tensor, seq_len: int) -> torch.Tensor:
    # cache: [num_blocks, block_size, kv_heads, head_dim]; blocks: [n] -> [seq_len, kv_heads, head_dim]
    # index_select, not cache[blocks]: advanced indexing is ~6x slower on CPU for this shape.
    return cache.index_select(0, blocks).flatten(0, 1)[:seq_len]


def _gather_batch(cache: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """table [B, nb] -> contiguous [B, kv_heads, nb * block_size, head_dim] (matmul wants it dense)."""
    batch, nb = table.shape
    _, block_size, kv_heads, head_dim = cache.shape
    gathered = cache.index_select(0, table.reshape(-1)).view(batch, nb * block_size, kv_heads, head_dim)
    return gathered.transpose(1, 2).contiguous()


def _attend_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                   block_tables: torch.Tensor, seq_lens: torch.Tensor, max_seq_len: int,
                   scale: float) -> torch.Tensor:
    """One new token per sequence, batched: q [B, H, D] -> [B, H, D].

    Plain batched matmuls with the GQA group folded into the query rows: on CPU this is ~10x
    faster than scaled_dot_product_attention with a mask and enable_gqa.
    """
    if q.shape[0] == 1 and q.device.type == "cpu":
        ctx = _one_context(block_tables[0], int(seq_lens[0]), k_cache.shape[1])
        return _attend_decode_one_cpu(q, k_cache, v_cache, ctx, scale)
    batch, heads, head_dim = q.shape
    block_size, kv_heads = k_cache.shape[1], k_cache.shape[2]
    table = block_tables[:, : (max_seq_len + block_size - 1) // block_size]  # [B, nb]
    k = _gather_batch(k_cache, table)  # [B, kv, L, D]
    v = _gather_batch(v_cache, table)
    qg = q.view(batch, kv_heads, heads // kv_heads, head_dim)  # [B, kv, g, D]
    scores = torch.matmul(qg, k.transpose(-1, -2)).float()  # [B, kv, g, L]
    # an additive -inf bias [B, L] broadcast in place: cheaper than masked_fill_ with a broadcast mask
    past_end = torch.arange(k.shape[2], device=q.device) >= seq_lens[:, None]  # [B, L]
    bias = torch.zeros(past_end.shape, device=q.device).masked_fill_(past_end, float("-inf"))
    scores.mul_(scale).add_(bias[:, None, None, :])
    probs = scores.softmax(dim=-1).to(v.dtype)
    return torch.matmul(probs, v).view(batch, heads, head_dim)  # [B, H, D]


@dataclass(frozen=True)
class _OneContext:
    """Where one sequence's first seq_len cached tokens sit: from slot `start` on when its blocks
    are consecutive ids (the pool hands out runs of free blocks in order), else in `blocks`."""

    seq_len: int
    start: int | None
    blocks: torch.Tensor | None  # [n] block ids, when not consecutive


def _one_context(table: torch.Tensor, seq_len: int, block_size: int) -> _OneContext:
    """table [max_blocks] block ids of one sequence; the same for every layer of a step."""
    blocks = table[: (seq_len + block_size - 1) // block_size].tolist()
    first = blocks[0]
    if blocks == list(range(first, first + len(blocks))):
        return _OneContext(seq_len, first * block_size, None)
    return _OneContext(seq_len, None, torch.tensor(blocks, dtype=torch.long, device=table.device))


def _context_view(cache: torch.Tensor, ctx: _OneContext) -> torch.Tensor:
    """cache [num_blocks, block_size, kv_heads, D] -> [seq_len, kv_heads, D]: a view, or a gather."""
    if ctx.start is not None:
        return cache.flatten(0, 1)[ctx.start:ctx.start + ctx.seq_len]
    assert ctx.blocks is not None
    return cache.index_select(0, ctx.blocks).flatten(0, 1)[:ctx.seq_len]


def _attend_decode_one_cpu(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           ctx: _OneContext, scale: float) -> torch.Tensor:
    """Batch-1 decode on CPU, where a step is ~8 small ops per layer and each op's overhead counts:
    the exact length read from seq_lens (host lengths may be upper bounds) means no mask, and
    SDPA's CPU kernel reads the cache through a strided view without copying it.
    q [1, H, D] -> [1, H, D]."""
    _, heads, head_dim = q.shape
    kv_heads = k_cache.shape[2]
    k = _context_view(k_cache, ctx).permute(1, 0, 2).unsqueeze(0)  # [1, kv, L, D]
    v = _context_view(v_cache, ctx).permute(1, 0, 2).unsqueeze(0)
    qg = q.view(1, kv_heads, heads // kv_heads, head_dim)  # the group as query rows: [1, kv, g, D]
    return F.scaled_dot_product_attention(qg, k, v, scale=scale).view(1, heads, head_dim)


def _attend_one(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                blocks: torch.Tensor, seq_len: int, scale: float) -> torch.Tensor:
    """One sequence with q_len new tokens at the end of its seq_len context: q [q_len, H, D]."""
    q_len, heads, _ = q.shape
    k = _gather_context(k_cache, blocks, seq_len).transpose(0, 1)  # [kv_heads, seq_len, D]
    v = _gather_context(v_cache, blocks, seq_len).transpose(0, 1)
    group = heads // k.shape[0]
    if group > 1:  # expanded K/V in 4-D runs the fused CPU kernel; enable_gqa takes a slower path
        k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
    qh = q.transpose(0, 1).unsqueeze(0)  # [1, H, q_len, D]
    k, v = k.unsqueeze(0), v.unsqueeze(0)
    if q_len == seq_len:
        out = F.scaled_dot_product_attention(qh, k, v, is_causal=True, scale=scale)
    else:
        q_pos = torch.arange(seq_len - q_len, seq_len, device=q.device)
        k_pos = torch.arange(seq_len, device=q.device)
        mask = k_pos[None, :] <= q_pos[:, None]  # [q_len, seq_len]
        out = F.scaled_dot_product_attention(qh, k, v, attn_mask=mask, scale=scale)
    return out[0].transpose(0, 1)  # [q_len, H, D]


# Query rows per pass of the CPU extend attention: the pass's fp32 scores [heads, rows, seq_len] stay
# near this size however long the context (a 2,048-token chunk over 8k tokens would need 600 MB).
_SCORES_BYTES = 8 << 20


def _attend_extend_cpu(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                       ctx: _OneContext, scale: float, fused_softmax: bool = False) -> torch.Tensor:
    """q [q_len, H, D], the new tokens at the end of ctx.seq_len cached ones -> [q_len, H, D].

    Two matmuls around an fp32 softmax (HF's eager attention), with each KV head's query group
    folded into its rows so K/V are read once per KV head instead of being repeated per query head,
    and read in place when the blocks are consecutive. On CPU this is ~2x SDPA's kernel for a
    prefix-cached turn (150 new tokens over 1,450: 4.3 vs 8.2 ms per layer, 1 thread).
    fused_softmax: the softmax between the matmuls is one CPU kernel, in place on the bf16 scores
    (torch.ops.sluicegate.causal_softmax_) instead of six torch ops over an fp32 copy."""
    q_len, heads, head_dim = q.shape
    kv_heads, seq_len = k_cache.shape[2], ctx.seq_len
    group = heads // kv_heads
    k = _context_view(k_cache, ctx).permute(1, 2, 0)  # [kv, D, L]
    v = _context_view(v_cache, ctx).transpose(0, 1)  # [kv, L, D]
    out = torch.empty(q_len, kv_heads, group, head_dim, dtype=q.dtype, device=q.device)
    rows = max(1, _SCORES_BYTES // ((2 if fused_softmax else 4) * heads * seq_len))
    first_pos = seq_len - q_len  # position of q's first row
    for s in range(0, q_len, rows):
        n = min(rows, q_len - s)
        qf = q[s:s + n].reshape(n, kv_heads, group, head_dim).permute(1, 2, 0, 3).reshape(kv_heads, group * n, head_dim)
        scores = torch.matmul(qf, k)  # [kv, g * n, L]
        if fused_softmax:
            torch.ops.sluicegate.causal_softmax_(scores.view(kv_heads * group, n, seq_len), first_pos + s, scale)
            probs = scores
        else:
            q_pos = torch.arange(first_pos + s, first_pos + s + n, device=q.device)
            future = torch.arange(seq_len, device=q.device)[None, :] > q_pos[:, None]  # [n, L]
            bias = torch.zeros(future.shape, device=q.device).masked_fill_(future, float("-inf"))
            scores32 = scores.float().view(kv_heads, group, n, seq_len)
            probs = scores32.mul_(scale).add_(bias).softmax(dim=-1).to(v.dtype).view(kv_heads, group * n, seq_len)
        out[s:s + n] = torch.matmul(probs, v).view(kv_heads, group, n, head_dim).permute(2, 0, 1, 3)
    return out.view(q_len, heads, head_dim)


def _decode_kernel_applies(q: torch.Tensor, k_cache: torch.Tensor) -> bool:
    """The paged decode kernel's cases: bf16 on CPU (fp32 keeps torch's ops, the HF-parity path),
    head sizes 64 and 128, up to 16 query heads per KV head."""
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16 and k_cache.dtype == q.dtype
            and q.shape[-1] in (64, 128) and q.shape[1] // k_cache.shape[2] <= 16)


def attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
           meta: AttentionMetadata, scale: float, cpu_kernels: bool = False) -> torch.Tensor:
    """cpu_kernels: decode rows go to torch.ops.sluicegate.paged_decode_attention where it applies
    (4-9x faster than the paths below, fp32 inside: bench/results/step_profile.md), and bf16
    prefill rows take the fused causal softmax."""
    kernel = cpu_kernels and _decode_kernel_applies(q, k_cache)
    fused_softmax = cpu_kernels and q.device.type == "cpu" and q.dtype == torch.bfloat16
    if meta.is_decode_only and kernel:
        return torch.ops.sluicegate.paged_decode_attention(q, k_cache, v_cache, meta.block_tables,
                                                           meta.seq_lens, scale)
    if meta.is_decode_only and q.shape[0] == 1 and q.device.type == "cpu":
        # the context is the same for every layer: find it on the first, reuse it on the others
        ctx = meta.per_step.get("one_context")
        if ctx is None:
            ctx = meta.per_step["one_context"] = _one_context(meta.block_tables[0], int(meta.seq_lens[0]),
                                                              k_cache.shape[1])
        return _attend_decode_one_cpu(q, k_cache, v_cache, ctx, scale)
    if meta.is_decode_only:
        return _attend_decode(q, k_cache, v_cache, meta.block_tables, meta.seq_lens,
                              meta.max_seq_len, scale)
    out = torch.empty_like(q)
    block_size = k_cache.shape[1]
    decode_rows = [i for i, n in enumerate(meta.query_lens_cpu) if n == 1]
    starts = meta.query_start_loc.tolist()
    if len(decode_rows) > 1 or (decode_rows and kernel):
        rows = torch.tensor([starts[i] for i in decode_rows], device=q.device)
        idx = torch.tensor(decode_rows, device=q.device)
        seq_lens = meta.seq_lens[idx]
        if kernel:
            out[rows] = torch.ops.sluicegate.paged_decode_attention(q[rows], k_cache, v_cache,
                                                                    meta.block_tables[idx], seq_lens, scale)
        else:
            max_len = max(meta.seq_lens_cpu[i] for i in decode_rows)
            out[rows] = _attend_decode(q[rows], k_cache, v_cache, meta.block_tables[idx], seq_lens,
                                       max_len, scale)
        done = set(decode_rows)
    else:
        done = set()
    for i in range(meta.num_seqs):
        if i in done:
            continue
        seq_len = meta.seq_lens_cpu[i]
        s, e = starts[i], starts[i + 1]
        if q.device.type == "cpu":
            ctx = _one_context(meta.block_tables[i], seq_len, block_size)
            out[s:e] = _attend_extend_cpu(q[s:e], k_cache, v_cache, ctx, scale, fused_softmax)
            continue
        blocks = meta.block_tables[i, : (seq_len + block_size - 1) // block_size]
        out[s:e] = _attend_one(q[s:e], k_cache, v_cache, blocks, seq_len, scale)
    return out


class TorchAttentionBackend:
    name = "torch"

    def __init__(self, cpu_kernels: bool = False) -> None:
        """cpu_kernels: bf16 rows on CPU use the paged decode kernel and the fused prefill softmax,
        once they are built."""
        self.cpu_kernels = cpu_kernels and cpu_ops.load()

    def store_kv(self, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                 v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        store_kv(k, v, k_cache, v_cache, slot_mapping)

    def attend(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
               meta: AttentionMetadata, scale: float) -> torch.Tensor:
        return attend(q, k_cache, v_cache, meta, scale, self.cpu_kernels)
