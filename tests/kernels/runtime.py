"""Where the kernel tests run: natively on a GPU, else under triton's CPU interpreter.

triton decides at decoration time whether a function is interpreted: its own standard library
(tl.zeros, tl.sum, ... are @jit functions) when triton is imported, our kernels when their modules
are imported. So on a machine without CUDA, importing this module (conftest.py does, first) sets
TRITON_INTERPRET=1. If another part of the suite already imported triton without it (transformers
does, for one), kernels cannot run in this process: NEEDS_SUBPROCESS is then True, this folder's
tests are skipped here and test_in_subprocess.py runs them all in a fresh process, whose result
decides pass or fail.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch  # torch does not import triton

KERNEL_MODULES = (
    "sluicegate.engine.attention.kernels.common",
    "sluicegate.engine.attention.kernels.store_kv",
    "sluicegate.engine.attention.kernels.paged_decode",
    "sluicegate.engine.attention.kernels.prefill_extend",
    "sluicegate.engine.kernels.token_bitmask",
)
SUBPROCESS_ENV = "SLUICEGATE_KERNEL_TESTS_SUBPROCESS"
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    os.environ["TRITON_INTERPRET"] = "1"


def _imported_without_interpreter() -> bool:
    """True when triton or a kernel module was imported before TRITON_INTERPRET=1 was set."""
    language = sys.modules.get("triton.language")
    if language is not None and type(language.zeros).__name__ == "JITFunction":
        return True
    for name in KERNEL_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        if any(type(obj).__name__ == "JITFunction" for obj in vars(module).values()):
            return True
    return False


NEEDS_SUBPROCESS = not ON_GPU and _imported_without_interpreter()
DEVICE = torch.device("cuda" if ON_GPU else "cpu")
