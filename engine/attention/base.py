"""The attention-backend protocol and the start-up choice between backends."""

from __future__ import annotations

from typing import Protocol

import torch

from sluicegate.engine.attention.metadata import AttentionMetadata


class AttentionBackend(Protocol):
    name: str

    def store_kv(self, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                 v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        """Write k, v [num_tokens, num_kv_heads, head_dim] into the paged caches at slot_mapping."""
        ...

    def attend(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
               meta: AttentionMetadata, scale: float) -> torch.Tensor:
        """q [num_tokens, num_heads, head_dim] -> out [num_tokens, num_heads, head_dim]."""
        ...


def select_backend(name: str, device: torch.device, cpu_kernels: bool = False) -> AttentionBackend:
    """Chosen once at start-up: triton on CUDA/ROCm/XPU, torch elsewhere; `name` forces one.
    cpu_kernels: the torch backend hands bf16 decode rows on CPU to the paged decode kernel
    (engine/kernels/csrc/paged_decode.cpp) where it can be built."""
    if name == "auto":
        name = "triton" if device.type in ("cuda", "xpu") else "torch"
    if name == "torch":
        from sluicegate.engine.attention.torch_backend import TorchAttentionBackend

        return TorchAttentionBackend(cpu_kernels=cpu_kernels and device.type == "cpu")
    if name == "triton":
        from sluicegate.engine.attention.triton_backend import TritonAttentionBackend

        return TritonAttentionBackend()
    raise ValueError(f"attention backend must be auto, torch or triton; got {name!r}")
