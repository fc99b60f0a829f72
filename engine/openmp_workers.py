"""Let the thread that steps the engine own the process's only OpenMP team.

torch's CPU ops run on OpenMP, and libgomp keeps one team of worker threads for every thread that
ever ran a parallel region. Its workers spin between regions (a few µs to the next one) only
while libgomp manages no more threads than there are CPUs; past that they sleep after ~100 spins
and every region, ~1,800 per decode step, pays a futex wake-up. A server loads the model on one
thread and steps it on another, so its step loop used to run with two teams and throttled
workers: on 2 cores, 2-thread decode in a side thread ran at 18.4/24.1 tok/s, 36.0/41.9 once the
builder's team was ended (bench/step_thread_probe.py, bench/results/serving_path.md).

After building an engine, the builder ends its own team (`omp_pause_resource_all`, OpenMP 5.0);
the first step starts a fresh one on whichever thread steps.
"""

from __future__ import annotations

import ctypes
import logging
from functools import cache
from pathlib import Path

import torch

log = logging.getLogger("sluicegate.engine")

_OMP_PAUSE_SOFT = 1  # omp_pause_resource_t: end the threads, keep the runtime's settings
# the OpenMP runtime a torch wheel ships: libgomp (Linux), libiomp5 (Intel builds), libomp (macOS)
_RUNTIME_GLOBS = ("libgomp*.so*", "libiomp5*.so*", "libomp*.so*", "libomp*.dylib", "libiomp5*.dylib")


@cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime torch's kernels run on, or None when none is found or it is too old."""
    lib_dir = Path(torch.__file__).parent / "lib"
    for pattern in _RUNTIME_GLOBS:
        for path in sorted(lib_dir.glob(pattern)):
            try:
                lib = ctypes.CDLL(str(path))
            except OSError:
                continue
            if hasattr(lib, "omp_pause_resource_all"):
                return lib
    try:  # a torch built against the system's runtime: it is already loaded into the process
        lib = ctypes.CDLL(None)
        return lib if hasattr(lib, "omp_pause_resource_all") else None
    except OSError:
        return None


def release_openmp_workers() -> bool:
    """End the calling thread's OpenMP worker threads; True when they were ended (or none ran).

    Call it from a thread that is done with torch's parallel work and leaves the stepping to
    another. It is safe to call on the stepping thread too: its next region starts a new team.
    """
    if not torch.backends.openmp.is_available():
        return False
    runtime = _openmp_runtime()
    if runtime is None:
        log.debug("no OpenMP runtime with omp_pause_resource_all found beside torch")
        return False
    released = runtime.omp_pause_resource_all(_OMP_PAUSE_SOFT) == 0
    log.debug("OpenMP workers of this thread %s", "ended" if released else "left running")
    return released
