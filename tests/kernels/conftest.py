"""Kernel tests: see runtime.py for how they run with and without a GPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kernels.runtime import HERE, NEEDS_SUBPROCESS  # sets TRITON_INTERPRET before triton loads

pytest.importorskip("triton")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not NEEDS_SUBPROCESS:
        return
    skip = pytest.mark.skip(reason="triton was imported without TRITON_INTERPRET in this process: "
                                   "test_in_subprocess.py runs these kernel tests in a fresh process")
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if path.parent == HERE and path.name != "test_in_subprocess.py":
            item.add_marker(skip)
