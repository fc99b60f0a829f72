"""An engine built on one thread leaves no OpenMP team behind for the thread that steps it."""

from __future__ import annotations

import os
import sys
import threading

import pytest
import torch

from sluicegate.engine.openmp_workers import release_openmp_workers

needs_openmp_threads = pytest.mark.skipif(
    not torch.backends.openmp.is_available() or not sys.platform.startswith("linux"),
    reason="counts the OpenMP worker threads of this process in /proc")


def _thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def _parallel_work() -> torch.Tensor:
    # large enough that at::parallel_for splits it over the OpenMP team
    return torch.arange(1 << 22, dtype=torch.float32).exp_().sum()


@needs_openmp_threads
def test_the_calling_threads_workers_end() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _parallel_work()
        with_team = _thread_count()
        assert release_openmp_workers() is True
        assert _thread_count() < with_team
    finally:
        torch.set_num_threads(threads)


@needs_openmp_threads
def test_torch_keeps_working_after_release_on_any_thread() -> None:
    expected = _parallel_work()
    release_openmp_workers()
    results: list[torch.Tensor] = []
    side = threading.Thread(target=lambda: results.append(_parallel_work()))
    side.start()
    side.join()
    assert torch.equal(results[0], expected)
    assert torch.equal(_parallel_work(), expected)


def test_without_openmp_it_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.openmp, "is_available", lambda: False)
    assert release_openmp_workers() is False
