"""Runs this folder's kernel tests in a fresh process when this one cannot interpret kernels."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.kernels.runtime import HERE, NEEDS_SUBPROCESS, REPO_ROOT, SUBPROCESS_ENV


@pytest.mark.skipif(not NEEDS_SUBPROCESS, reason="the kernel tests run in this process")
def test_kernel_tests_pass_in_a_fresh_interpreter_process() -> None:
    assert os.environ.get(SUBPROCESS_ENV) != "1", "the fresh process must not need another one"
    env = dict(os.environ, TRITON_INTERPRET="1", **{SUBPROCESS_ENV: "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    report = result.stdout[-6000:] + result.stderr[-3000:]
    print(report)
    assert result.returncode == 0, report
    assert " passed" in result.stdout, report


def test_backend_imports_on_a_machine_without_a_gpu() -> None:
    # No kernel launch or device query at import: a CPU-only process imports and builds the backend.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(CUDA_VISIBLE_DEVICES="", PYTHONPATH=str(REPO_ROOT))
    code = ("import torch\n"
            "from sluicegate.engine.attention.base import select_backend\n"
            "b = select_backend('triton', torch.device('cpu'))\n"
            "assert b.name == 'triton', b.name\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
