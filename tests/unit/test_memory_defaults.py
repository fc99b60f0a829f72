"""gateway.memory: the per-shape matmul caches are bounded unless the operator sized them."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sluicegate.gateway.memory import CACHE_CAPACITY_DEFAULTS, apply_memory_defaults

ROOT = Path(__file__).resolve().parents[2]

# Fresh process (the caches read their capacity once): malloc'd bytes grown by 300 distinct token
# counts through one bf16 linear. Unbounded (1,024 entries each) this was ~170 MiB; bounded, ~35.
_PROBE = """
import ctypes, sys, torch
torch.set_num_threads(1)
if sys.argv[1] == "bounded":
    from sluicegate.gateway.memory import apply_memory_defaults
    apply_memory_defaults()
libc = ctypes.CDLL("libc.so.6")
class MI(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = MI
w = torch.randn(576, 576, dtype=torch.bfloat16)
torch.nn.functional.linear(torch.randn(1, 576, dtype=torch.bfloat16), w)
before = libc.mallinfo2().uordblks
for n in range(2, 302):
    torch.nn.functional.linear(torch.randn(n, 576, dtype=torch.bfloat16), w)
print((libc.mallinfo2().uordblks - before) / 2**20)
"""


def test_operator_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CACHE_CAPACITY_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "7")
    apply_memory_defaults()
    assert os.environ["LRU_CACHE_CAPACITY"] == "7"
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == CACHE_CAPACITY_DEFAULTS["ONEDNN_PRIMITIVE_CACHE_CAPACITY"]


def _growth_mib(mode: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in CACHE_CAPACITY_DEFAULTS}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env=env, capture_output=True, text=True,
                         check=True, timeout=120)
    return float(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not (ctypes.util.find_library("c") and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")),
                    reason="needs glibc's mallinfo2")
@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="bf16 matmul does not go through oneDNN")
def test_bounded_caches_hold_far_less_after_many_shapes() -> None:
    default, bounded = _growth_mib("default"), _growth_mib("bounded")
    if default < 60:  # this torch build does not cache per shape: nothing to bound
        pytest.skip(f"unbounded growth only {default:.0f} MiB")
    assert bounded < default / 2, (default, bounded)
