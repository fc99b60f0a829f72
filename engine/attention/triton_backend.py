"""The triton attention backend: the fast path on GPUs, same contract as the torch reference.

attend() runs the paged decode kernel when every sequence brings one token (with split-K when
there are too few (sequence, kv head) pairs to fill the GPU), and the varlen prefill/extend kernel
otherwise (mixed batches of decodes, prefill chunks and prefix-cache extends in one launch).
Nothing launches or queries a device at import.
"""

from __future__ import annotations

import torch

from sluicegate.engine.attention.kernels.paged_decode import choose_num_splits, paged_decode
from sluicegate.engine.attention.kernels.prefill_extend import prefill_extend
from sluicegate.engine.attention.kernels.store_kv import store_kv
from sluicegate.engine.attention.metadata import AttentionMetadata

_SM_COUNT: dict[int, int] = {}


def _num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA/ROCm device, cached; 1 elsewhere (the interpreter)."""
    if device.type != "cuda":
        return 1
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        _SM_COUNT[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


class TritonAttentionBackend:
    name = "triton"

    def __init__(self, decode_block_n: int = 64, prefill_block_m: int = 64, prefill_block_n: int = 64,
                 max_decode_splits: int = 32) -> None:
        self.decode_block_n = decode_block_n
        self.prefill_block_m = prefill_block_m
        self.prefill_block_n = prefill_block_n
        self.max_decode_splits = max_decode_splits

    def store_kv(self, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                 v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        # k, v: [num_tokens, num_kv_heads, head_dim]; slot -1 skips the row
        store_kv(k, v, k_cache, v_cache, slot_mapping)

    def attend(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
               meta: AttentionMetadata, scale: float) -> torch.Tensor:
        # q: [num_tokens, num_heads, head_dim] -> out: same shape
        if meta.is_decode_only:
            num_splits = choose_num_splits(
                meta.num_seqs, k_cache.shape[2], meta.max_seq_len, _num_sms(q.device),
                self.decode_block_n, max_splits=self.max_decode_splits)
            return paged_decode(q, k_cache, v_cache, meta.block_tables, meta.seq_lens,
                                meta.max_seq_len, scale, num_splits=num_splits,
                                block_n=self.decode_block_n)
        return prefill_extend(q, k_cache, v_cache, meta.block_tables, meta.seq_lens,
                              meta.query_start_loc, scale, block_m=self.prefill_block_m,
                              block_n=self.prefill_block_n)
