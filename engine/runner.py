"""ModelRunner: ForwardBatch -> tensors -> model forward on the paged KV cache -> logits.

It knows nothing of requests' lifecycles; it owns the KV tensors and the model.
"""

from __future__ import annotations

import torch

from engine.attention.base import AttentionBackend
from engine.attention.metadata import AttentionMetadata
from engine.batch import ForwardBatch
from engine.models.arch import ModelArch
from engine.models.llama import LlamaModel


def kv_bytes_per_block(arch: ModelArch, block_size: int, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    return 2 * arch.num_layers * block_size * arch.num_kv_heads * arch.head_dim * itemsize


def allocate_kv_caches(arch: ModelArch, num_blocks: int, block_size: int, dtype: torch.dtype,
                       device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (k_cache, v_cache), each [num_blocks, block_size, num_kv_heads, head_dim]."""
    shape = (num_blocks, block_size, arch.num_kv_heads, arch.head_dim)
    return [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
            for _ in range(arch.num_layers)]


class ModelRunner:
    def __init__(self, model: LlamaModel, backend: AttentionBackend, num_blocks: int, block_size: int) -> None:
        self.model = model
        self.backend = backend
        self.device = model.device
        self.block_size = block_size
        self.kv_caches = allocate_kv_caches(model.arch, num_blocks, block_size, model.dtype, model.device)

    @torch.inference_mode()
    def run(self, batch: ForwardBatch) -> torch.Tensor:
        """Returns logits [len(batch.sample_rows), vocab] (fp32) for the sequences that sample."""
        meta = AttentionMetadata.build(batch.query_lens, batch.seq_lens, batch.block_tables,
                                       self.block_size, self.device)
        input_ids = torch.tensor(batch.input_ids, dtype=torch.long, device=self.device)  # [T]
        positions = torch.tensor(batch.positions, dtype=torch.long, device=self.device)  # [T]
        hidden = self.model.forward(input_ids, positions, self.kv_caches, meta)  # [T, H]
        if not batch.sample_rows:
            return torch.empty((0, self.model.arch.vocab_size), device=self.device)
        rows = torch.tensor(batch.sample_rows, dtype=torch.long, device=self.device)
        return self.model.logits(hidden[rows])  # [S, V]
