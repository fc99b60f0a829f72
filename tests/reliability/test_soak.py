"""A bounded soak (bench/soak.py's, smaller): mixed concurrent requests, then nothing left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.soak import KINDS, live_matchers, run_soak

pytestmark = pytest.mark.slow


def test_soak_loses_nothing_and_leaves_nothing(servers: Any) -> None:
    result = asyncio.run(run_soak(servers.url, servers.model, total=len(KINDS) * 16, concurrency=48, max_tokens=4))
    assert result.lost == 0, result.outcomes
    assert result.peak_in_flight == 48
    assert set(result.outcomes) <= {"ok", "disconnected"}, result.outcomes  # no error under this load
    for kind, counts in result.by_kind.items():
        expected = "disconnected" if kind in ("disconnect_mid_stream", "give_up_queued") else "ok"
        assert sum(counts.values()) == 16 and set(counts) <= {expected, "ok"}, (kind, counts)
    servers.wait_idle()  # integrity, no request or stream queue, KV usage 0
    assert live_matchers() == 0
