"""Decode steps replayed from captured CUDA graphs.

A decode step of B sequences is ~10 small kernels per layer; at small B the GPU idles between the
host's launches. The forward is captured once per padded batch size at start-up and replayed with
the step's inputs copied into static buffers, so a decode step costs one launch.

- Batch sizes: a step of n sequences runs the smallest captured size >= n; the padding rows feed
  token 0 at position 0 with context length 1 through block 0, the pool's null block, which no
  request ever owns: they write and read only there.
- The captured metadata fixes max_seq_len at max_model_len, so the decode kernel's grid (its
  split-K plan) is the same at capture and at every replay; each sequence's real length is read
  from the static seq_lens buffer on the device.
- Only the forward to the final hidden states is captured; logits of the sampled rows and the
  sampler run eagerly (they are a few large kernels).
- Where there is no CUDA (the CPU test suite), EagerReplay stands in for a graph: same static
  buffers, same padding, same captured metadata, so the replay path is tested without a GPU.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any, Protocol

import torch

from sluicegate.engine.attention.metadata import AttentionMetadata, HostAttentionInputs
from sluicegate.engine.batch import ForwardBatch
from sluicegate.engine.host_to_device import copy_into
from sluicegate.engine.models.llama import LlamaModel

NULL_BLOCK = 0  # the block pool's pinned block: padding rows write and read only here


class StepGraph(Protocol):
    def replay(self) -> None: ...


# capture(fn) -> (graph, the tensor fn returned, whose memory every replay overwrites)
Capture = Callable[[Callable[[], torch.Tensor]], tuple[StepGraph, torch.Tensor]]


def capture_sizes(max_batch: int) -> tuple[int, ...]:
    """1, 2, 4, 8, then every 8 up to max_batch (and max_batch itself): < 8 padded rows per step."""
    sizes = {s for s in (1, 2, 4) if s <= max_batch} | set(range(8, max_batch + 1, 8)) | {max_batch}
    return tuple(sorted(sizes))


class EagerReplay:
    """A stand-in for a CUDA graph: replay() re-runs the captured function into the same output."""

    def __init__(self, fn: Callable[[], torch.Tensor], out: torch.Tensor) -> None:
        self.fn, self.out = fn, out

    def replay(self) -> None:
        self.out.copy_(self.fn())


def capture_eager(fn: Callable[[], torch.Tensor]) -> tuple[StepGraph, torch.Tensor]:
    out = fn()
    return EagerReplay(fn, out), out


class CudaGraphCapture:
    """Captures into torch.cuda.CUDAGraph objects that share one memory pool (largest size first,
    so the smaller graphs reuse its blocks)."""

    def __init__(self) -> None:
        self.pool: Any = torch.cuda.graph_pool_handle()

    def __call__(self, fn: Callable[[], torch.Tensor]) -> tuple[StepGraph, torch.Tensor]:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # triton compiles (and allocates its scratch) outside the capture
            fn()
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = fn()
        return graph, out


class DecodeGraphRunner:
    def __init__(self, model: LlamaModel, kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
                 block_size: int, max_model_len: int, max_batch: int) -> None:
        self.model = model
        self.kv_caches = kv_caches
        self.block_size = block_size
        self.max_model_len = max_model_len
        self.width = -(-max_model_len // block_size)  # block-table columns of any sequence
        device = model.device
        # Static inputs: every captured graph reads slices [:size] of these.
        self.input_ids = torch.zeros(max_batch, dtype=torch.long, device=device)  # [Bmax]
        self.positions = torch.zeros(max_batch, dtype=torch.long, device=device)  # [Bmax]
        self.seq_lens = torch.ones(max_batch, dtype=torch.int32, device=device)  # [Bmax]
        self.block_tables = torch.full((max_batch, self.width), NULL_BLOCK, dtype=torch.int32,
                                       device=device)  # [Bmax, width]
        self.slot_mapping = torch.zeros(max_batch, dtype=torch.int64, device=device)  # [Bmax]
        self.query_start_loc = torch.arange(max_batch + 1, dtype=torch.int32, device=device)  # [Bmax + 1]
        self.sizes: list[int] = []
        self.graphs: dict[int, StepGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}  # size -> hidden [size, H], overwritten by replay
        self.num_replays = 0

    @torch.inference_mode()
    def capture(self, sizes: tuple[int, ...], capture: Capture) -> None:
        for size in sorted(sizes, reverse=True):
            self.graphs[size], self.outputs[size] = capture(self._forward_fn(size))
        self.sizes = sorted(self.graphs)

    def _forward_fn(self, size: int) -> Callable[[], torch.Tensor]:
        meta = AttentionMetadata(
            query_start_loc=self.query_start_loc[: size + 1], seq_lens=self.seq_lens[:size],
            block_tables=self.block_tables[:size], slot_mapping=self.slot_mapping[:size],
            max_query_len=1, max_seq_len=self.max_model_len,
            # host lengths are upper bounds here: backends take real lengths from seq_lens
            query_lens_cpu=[1] * size, seq_lens_cpu=[self.max_model_len] * size)
        ids, positions = self.input_ids[:size], self.positions[:size]
        return lambda: self.model.forward(ids, positions, self.kv_caches, meta)  # [size, H]

    def fits(self, batch: ForwardBatch) -> bool:
        """A decode-only step (one token per sequence) of at most the largest captured size."""
        return (bool(self.sizes) and 0 < batch.num_seqs <= self.sizes[-1]
                and batch.num_tokens == batch.num_seqs
                and max(len(t) for t in batch.block_tables) <= self.width)

    def run(self, batch: ForwardBatch) -> torch.Tensor:
        """-> final hidden states [num_seqs, H] (a view of the graph's output: use before the next run)."""
        n = batch.num_seqs
        size = self.sizes[bisect.bisect_left(self.sizes, n)]
        pad = size - n
        host = HostAttentionInputs.build([1] * size, batch.seq_lens + [1] * pad,
                                         batch.block_tables + [[NULL_BLOCK]] * pad, self.block_size,
                                         width=self.width)
        copy_into(self.input_ids[:size], torch.tensor(batch.input_ids + [0] * pad, dtype=torch.long))
        copy_into(self.positions[:size], torch.tensor(batch.positions + [0] * pad, dtype=torch.long))
        copy_into(self.seq_lens[:size], host.seq_lens)
        copy_into(self.block_tables[:size], host.block_tables)
        copy_into(self.slot_mapping[:size], host.slot_mapping)
        self.graphs[size].replay()
        self.num_replays += 1
        return self.outputs[size][:n]
