"""Process-wide memory defaults for a long-running server, applied before the model loads.

torch's CPU matmul path for bf16 (ideep over oneDNN) caches one compiled primitive per distinct
(op, shape) twice: oneDNN's primitive cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY) and ideep's LRU
(LRU_CACHE_CAPACITY), each 1,024 entries by default, ~0.3-0.6 MiB per entry for this model.
A serving engine's matmuls take a new token count almost every step (chunked prefill, changing
batch sizes), so both fill with primitives that are rarely reused. Measured (SmolLM2-135M, CPU
bf16): on the soak mix the oneDNN cache alone held ~100 MiB after 450 requests and kept growing
until full; 400 distinct token counts through one 576x576 linear grow malloc'd memory by 231 MiB
with the defaults and by 37 MiB with both bounded to 64. Recreating a primitive costs
microseconds: the soak's throughput was the same with a capacity of 16 or 64. The environment variable wins when the operator sets it.
"""

from __future__ import annotations

import os

# environment variable -> the bound used when the operator has not set it
CACHE_CAPACITY_DEFAULTS: dict[str, str] = {
    "ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64",  # oneDNN's compiled primitives
    "LRU_CACHE_CAPACITY": "64",  # ideep's (torch mkldnn) computation cache
}


def apply_memory_defaults() -> None:
    """Bound the per-shape matmul caches unless the operator chose sizes. Both are read when the
    first primitive is created, so this must run before the first forward pass (measured: setting
    them at run time before that bounds the cache exactly as setting them at process start)."""
    for name, value in CACHE_CAPACITY_DEFAULTS.items():
        os.environ.setdefault(name, value)
