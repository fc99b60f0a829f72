"""AttentionMetadata: how a flattened, unpadded batch maps onto the paged KV cache.

The contract every attention backend (torch reference, triton kernels) implements:

- q:        [num_tokens, num_heads, head_dim]       new tokens of all sequences, back to back
- k, v:     [num_tokens, num_kv_heads, head_dim]    their keys / values (rope already applied to k)
- k_cache, v_cache: [num_blocks, block_size, num_kv_heads, head_dim]   one pair per layer
- sequence i owns rows query_start_loc[i] : query_start_loc[i+1] of q (query_len_i tokens);
  after this step its context holds seq_lens[i] tokens (cached prefix + new), so its new token j
  sits at position p = seq_lens[i] - query_len_i + j and attends causally to positions 0..p.
- token position p of sequence i lives in block block_tables[i, p // block_size] at offset
  p % block_size; slot_mapping[t] = block * block_size + offset is where new token t is written.
- num_heads is a multiple of num_kv_heads (GQA): query head h reads kv head h // (num_heads // num_kv_heads).

Backends first write the new k/v into the cache through slot_mapping, then attend reading only the
cache, so a prefix-cache hit and a fresh prefill take the same path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sluicegate.engine.host_to_device import to_device


@dataclass
class AttentionMetadata:
    query_start_loc: torch.Tensor  # [num_seqs + 1] int32, cumulative query lengths
    seq_lens: torch.Tensor  # [num_seqs] int32, context length after this step
    block_tables: torch.Tensor  # [num_seqs, max_blocks_per_seq] int32, padded with 0
    slot_mapping: torch.Tensor  # [num_tokens] int64
    max_query_len: int
    max_seq_len: int
    # Host copies, so backends that loop on the host never sync with the device.
    query_lens_cpu: list[int]
    seq_lens_cpu: list[int]
    # What a backend works out on a step's first layer and reuses on the others (same for all layers).
    per_step: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_cpu)

    @property
    def is_decode_only(self) -> bool:
        return self.max_query_len == 1

    @staticmethod
    def build(query_lens: list[int], seq_lens: list[int], block_tables: list[list[int]],
              block_size: int, device: torch.device) -> AttentionMetadata:
        """Build from host lists: per sequence its new-token count, context length, block ids."""
        host = HostAttentionInputs.build(query_lens, seq_lens, block_tables, block_size)
        return AttentionMetadata(
            query_start_loc=to_device(host.query_start_loc, device),
            seq_lens=to_device(host.seq_lens, device),
            block_tables=to_device(host.block_tables, device),
            slot_mapping=to_device(host.slot_mapping, device),
            max_query_len=max(query_lens, default=0),
            max_seq_len=max(seq_lens, default=0),
            query_lens_cpu=list(query_lens),
            seq_lens_cpu=list(seq_lens),
        )


@dataclass(frozen=True)
class HostAttentionInputs:
    """The index tensors of AttentionMetadata, built on the host (before the copy to the device)."""

    query_start_loc: torch.Tensor  # [num_seqs + 1] int32
    seq_lens: torch.Tensor  # [num_seqs] int32
    block_tables: torch.Tensor  # [num_seqs, width] int32, padded with 0 (the null block)
    slot_mapping: torch.Tensor  # [num_tokens] int64

    @staticmethod
    def build(query_lens: list[int], seq_lens: list[int], block_tables: list[list[int]],
              block_size: int, width: int | None = None) -> HostAttentionInputs:
        """width: columns of the block table (default: the longest table; CUDA graphs fix it)."""
        num_seqs = len(query_lens)
        if width is None:
            width = max((len(b) for b in block_tables), default=1) or 1
        table = torch.zeros((num_seqs, width), dtype=torch.int32)
        for i, blocks in enumerate(block_tables):
            if blocks:
                table[i, : len(blocks)] = torch.tensor(blocks, dtype=torch.int32)
        slots: list[int] = []
        for qlen, slen, blocks in zip(query_lens, seq_lens, block_tables):
            for pos in range(slen - qlen, slen):
                slots.append(blocks[pos // block_size] * block_size + pos % block_size)
        starts = [0]
        for qlen in query_lens:
            starts.append(starts[-1] + qlen)
        return HostAttentionInputs(
            query_start_loc=torch.tensor(starts, dtype=torch.int32),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
            block_tables=table,
            slot_mapping=torch.tensor(slots, dtype=torch.int64),
        )
