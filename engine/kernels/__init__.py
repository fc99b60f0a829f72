"""Kernels outside attention: triton ones on the sampling side (token_bitmask.py; importing defines
kernels only, no launch or device query, so they import on a machine without a GPU and
TRITON_INTERPRET=1 runs them on CPU), and the C++ CPU kernels of a bf16 forward's small ops and
attention (cpu_ops.py, built on first use)."""
