"""Triton kernels outside attention (sampling-side). Importing defines kernels only: no launch, no
device query, so they import on a machine without a GPU (TRITON_INTERPRET=1 runs them on CPU)."""
