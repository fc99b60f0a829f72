"""Triton kernels for the paged KV cache: store_kv, paged decode, variable-length prefill/extend.

Importing these modules only defines kernels (no launch, no device query), so they import on a
machine without a GPU; with TRITON_INTERPRET=1 set before import they run on CPU via numpy.
"""
