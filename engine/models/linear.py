"""y = x @ W.T + b, with the weight also laid out once for the CPU's matmul library where it pays.

On CPU, F.linear on a bf16 weight hands the plain [N, K] matrix to oneDNN, which reorders it into
its blocked layout on every call: for a decode step's few rows the reorder costs as much as the
matmul, and for a prefill chunk it streams the whole weight once more from memory. oneDNN's linear
on a weight reordered once at load gives bit-identical results (same kernel, same accumulation
order) at about half the time for one row; in isolation the gain shrinks to a few percent by 256
rows, but inside a forward, where each layer's weight comes from memory, a prefix-cached turn of
130 tokens takes ~6% less and the offline mixed workload ~7% less (bench/results/step_profile.md),
so every call of a packed weight uses it. fp32 keeps F.linear: the packed path uses a different
kernel than MKL's sgemm, so results would move by rounding.

Where the checkpoint's weight is stored in 4 or 8 bits (a GGUF's Q4_0, Q4_1, Q4_K or Q8_0 layers),
calls of a few rows read those codes instead (engine/models/quantized.py): a decode step at one
row reads a quarter or half of the bytes. Those rows see the stored weights (4-bit ones with bf16
scales), the rest the same weights rounded to bf16; the two differ by about bf16's rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sluicegate.engine.models.quantized import QuantizedWeight


def _can_pack(weight: torch.Tensor) -> bool:
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16 or weight.dim() != 2:
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class Linear:
    """A linear layer's weight [N, K] (and bias [N]); call on x [M, K] -> [M, N]."""

    __slots__ = ("_plain", "bias", "packed", "quantized")

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 quantized: QuantizedWeight | None = None) -> None:
        self.bias = bias
        self.quantized = quantized  # the same weight as stored low-bit codes, for calls of a few rows
        # oneDNN's blocked layout (tuned for one row, used for any); None where packing does not apply.
        # A packed weight is the only copy kept: every call reads it, and `weight` unpacks it on demand.
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 1) if _can_pack(weight) else None
        self._plain = weight if self.packed is None else None

    @property
    def weight(self) -> torch.Tensor:
        """The plain [N, K] weight (a fresh copy when only the packed one is kept)."""
        if self._plain is not None:
            return self._plain
        assert self.packed is not None
        return self.packed.to_dense()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantized is not None and x.shape[0] <= self.quantized.max_rows:
            y = self.quantized.matmul(x)
            return y if self.bias is None else y + self.bias
        if self.packed is not None:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
