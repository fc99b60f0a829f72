"""Keep freed memory in the process's heap instead of handing it back to the OS after every step.

A CPU step allocates and frees buffers of a few MB (attention scores, matmul outputs). glibc's
malloc serves those from fresh mmaps or trims the heap's top after each free, so the next step
touches new pages and takes a page fault for every 4 KiB: measured ~2x on a prefill's attention
(bench/results/step_profile.md). Raising the two thresholds once at start-up keeps that memory
mapped; the KV pool and weights are allocated once and are unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("sluicegate.engine")

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD_BYTES = 1 << 30  # keep up to 1 GiB of freed memory at the heap's top
MMAP_THRESHOLD_BYTES = 32 << 20  # allocations below 32 MiB come from the heap, not their own mmap


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds; True when applied (False off glibc, e.g. macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    applied = bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("malloc thresholds %s", "raised" if applied else "left as they were")
    return applied
