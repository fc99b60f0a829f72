"""y = x @ W.T + b with the weight laid out once for the CPU's matmul library.

On CPU, F.linear on a bf16 weight hands the plain [N, K] matrix to oneDNN, which reorders it into
its blocked layout on every call: for one decode token that reorder costs as much as the matmul
(measured ~2x per call on the model's shapes; bench/decode_profile.py). Reordering once at load
and calling oneDNN's linear on the packed weight gives bit-identical results (same kernel, same
accumulation order) at about half the time. fp32 keeps F.linear: there the packed path uses a
different kernel than MKL's sgemm, so results would move by rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _can_pack(weight: torch.Tensor) -> bool:
    if weight.device.type != "cpu" or weight.dtype != torch.bfloat16 or weight.dim() != 2:
        return False
    if not torch.backends.mkldnn.is_available():
        return False
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


# Rows up to which a packed weight is used.
PACKED_MAX_ROWS = 8
# Off by default. Measured (bench/results/engine_decode.md): packed calls are 1.6-2.4x faster in
# isolation at 1-4 rows, but the 64-request mixed workload ran ~1.7x slower end to end with every
# call packed and ~1.35x slower with packing limited to <= 8 rows, while packing off ran at the
# earlier speed; the cause is not found. Single-stream decode loses its packing gain with it off.
PACK_BY_DEFAULT = False


class Linear:
    """A linear layer's weight [N, K] (and bias [N]); call on x [..., K] -> [..., N]."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 pack: bool = PACK_BY_DEFAULT) -> None:
        self.out_features, self.in_features = weight.shape
        self.bias = bias
        self.weight = weight
        self.packed: torch.Tensor | None = None
        if pack and _can_pack(weight):
            # batch-size hint 1: tuned for decode. The plain weight stays for larger calls (costs
            # one more copy of the weights in memory).
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None and x.numel() <= PACKED_MAX_ROWS * self.in_features:
            return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)
