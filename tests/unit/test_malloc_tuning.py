"""The engine keeps freed memory mapped on glibc (fewer page faults per CPU step)."""

from __future__ import annotations

import platform
import sys

import pytest

from sluicegate.engine.malloc_tuning import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt's thresholds are glibc's")
def test_thresholds_are_set_on_glibc() -> None:
    assert keep_freed_memory() is True


def test_elsewhere_it_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert keep_freed_memory() is False
