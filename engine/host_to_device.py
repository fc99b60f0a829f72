"""Host → device copies for per-step inputs.

On CUDA a step's small index tensors (token ids, positions, block tables, slot mapping, grammar
bitmasks) go through page-locked memory with non-blocking copies: the host goes on building the
rest of the step while the copy engine moves the bytes, instead of stalling on a pageable
synchronous copy per tensor. torch's caching host allocator keeps each pinned buffer alive until
the copy that reads it has completed, so the caller may drop the host tensor at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def uses_pinned_copies(device: torch.device) -> bool:
    return device.type == "cuda"


def to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`: itself on CPU, a pinned non-blocking copy on CUDA."""
    if device.type == "cpu":
        return host
    if uses_pinned_copies(device):
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def tensor_on(values: Sequence[float], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """torch.tensor(values) built on the host, then moved with to_device()."""
    return to_device(torch.tensor(values, dtype=dtype), device)


def copy_into(static: torch.Tensor, host: torch.Tensor) -> None:
    """Fill a (device-resident, e.g. CUDA-graph input) buffer from a host tensor of its shape."""
    if static.device.type == "cpu":
        static.copy_(host)
    else:
        static.copy_(host.pin_memory() if uses_pinned_copies(static.device) else host, non_blocking=True)
