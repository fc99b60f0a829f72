"""ModelRunner: ForwardBatch -> tensors -> model forward on the paged KV cache -> logits.

It knows nothing of requests' lifecycles; it owns the KV tensors, the model and (on CUDA) the
captured decode graphs.
"""

from __future__ import annotations

import logging
import time

import torch

from sluicegate.engine.attention.base import AttentionBackend
from sluicegate.engine.attention.metadata import AttentionMetadata
from sluicegate.engine.batch import ForwardBatch
from sluicegate.engine.decode_graphs import Capture, CudaGraphCapture, DecodeGraphRunner, capture_sizes
from sluicegate.engine.host_to_device import tensor_on
from sluicegate.engine.models.arch import ModelArch
from sluicegate.engine.models.llama import LlamaModel

log = logging.getLogger("sluicegate.engine")


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
        self.decode_graphs: DecodeGraphRunner | None = None

    def capture_decode_graphs(self, max_batch: int, max_model_len: int,
                              capture: Capture | None = None) -> bool:
        """Capture the decode forward for padded batch sizes up to max_batch (CUDA graphs by default;
        tests pass decode_graphs.capture_eager on CPU). Returns whether graphs are in use: a capture
        that fails is logged and decode stays eager, because a driver / kernel combination nobody
        has tried must cost speed, never the server."""
        start = time.perf_counter()
        sizes = capture_sizes(max_batch)
        try:
            graphs = DecodeGraphRunner(self.model, self.kv_caches, self.block_size, max_model_len, max_batch)
            graphs.capture(sizes, capture or CudaGraphCapture())
        except Exception:
            log.exception("decode graph capture failed; decode steps run eagerly (--no-cuda-graphs skips the capture)")
            self.decode_graphs = None
            return False
        self.decode_graphs = graphs
        log.info("captured decode graphs for batch sizes %s in %.1f s", list(sizes), time.perf_counter() - start)
        return True

    @torch.inference_mode()
    def run(self, batch: ForwardBatch) -> torch.Tensor:
        """Returns logits [len(batch.sample_rows), vocab] (fp32) for the sequences that sample."""
        if self.decode_graphs is not None and self.decode_graphs.fits(batch):
            hidden = self.decode_graphs.run(batch)  # [num_seqs, H]
        else:
            meta = AttentionMetadata.build(batch.query_lens, batch.seq_lens, batch.block_tables,
                                           self.block_size, self.device)
            input_ids = tensor_on(batch.input_ids, torch.long, self.device)  # [T]
            positions = tensor_on(batch.positions, torch.long, self.device)  # [T]
            hidden = self.model.forward(input_ids, positions, self.kv_caches, meta)  # [T, H]
        if not batch.sample_rows:
            return torch.empty((0, self.model.arch.vocab_size), device=self.device)
        if len(batch.sample_rows) == hidden.shape[0]:  # every row samples (decode): no gather
            return self.model.logits(hidden)  # [S, V]
        rows = tensor_on(batch.sample_rows, torch.long, self.device)
        return self.model.logits(hidden[rows])  # [S, V]
