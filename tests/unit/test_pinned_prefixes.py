"""Pinned prefixes (prompt_cache_retention="24h"): the protected free tier of the block pool.

Exact block ids and eviction order on tiny pools, like test_block_pool.py."""

from __future__ import annotations

import pytest

from sluicegate.engine.kv_cache.block_pool import PIN_SCAN_INTERVAL_S, BlockPool
from sluicegate.engine.kv_cache.manager import KVCacheManager
from sluicegate.engine.params import InvalidRequestError, SamplingParams

DAY = 24 * 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(num_blocks: int, clock: Clock, max_pinned_fraction: float = 1.0) -> KVCacheManager:
    kv = KVCacheManager(num_blocks, block_size=2)
    kv.pool = BlockPool(num_blocks, max_pinned_fraction=max_pinned_fraction, clock=clock)
    return kv


def fill(kv: KVCacheManager, request_id: str, tokens: list[int], pin_seconds: float = 0.0) -> list[int]:
    """Run one request through: allocate, compute every token, free. Returns its block table."""
    hits = kv.find_cached_prefix(request_id, tokens)
    assert kv.allocate(request_id, len(tokens), hits)
    table = kv.block_table(request_id)
    kv.commit(request_id, tokens, len(tokens))
    kv.free(request_id, pin_seconds)
    return table


def test_pinned_blocks_are_evicted_only_after_every_unpinned_block() -> None:
    clock = Clock()
    kv = manager(7, clock)  # 6 usable blocks
    pinned = fill(kv, "agent", [1, 2, 3, 4, 5], pin_seconds=DAY)  # blocks 1, 2 cached, 3 partial
    assert pinned == [1, 2, 3]
    assert [b.block_id for b in kv.pool.pinned_queue] == [2, 1]  # the partial block is not protected
    # Other traffic churns through every unprotected block twice: the pinned prefix survives.
    fill(kv, "x", [9, 9, 8, 8, 7, 7, 6])
    fill(kv, "y", [5, 5, 6, 6, 7, 7, 8])
    hits = kv.find_cached_prefix("agent-2", [1, 2, 3, 4, 0])
    assert [b.block_id for b in hits] == [1, 2]
    kv.check_integrity(set())


def test_a_live_request_may_take_pinned_blocks_when_nothing_else_is_free() -> None:
    clock = Clock()
    kv = manager(5, clock)  # 4 usable blocks
    fill(kv, "agent", [1, 2, 3, 4, 5], pin_seconds=DAY)
    assert kv.pool.num_free_blocks == 4  # pinning never shrinks what an allocation can take
    assert kv.allocate("big", 8)
    assert sorted(kv.block_table("big")) == [1, 2, 3, 4]
    assert kv.pool.num_pinned_free_blocks == 0
    kv.free("big")
    assert kv.find_cached_prefix("agent-2", [1, 2, 3, 4, 5]) == []  # recomputed, as it must be
    kv.check_integrity(set())


def test_pins_lapse_after_their_retention_without_use() -> None:
    clock = Clock()
    kv = manager(7, clock)
    fill(kv, "agent", [1, 2, 3, 4, 5], pin_seconds=DAY)
    clock.now += DAY + PIN_SCAN_INTERVAL_S
    kv.pool.allocate(0)  # allocation notices lapsed pins
    assert kv.pool.num_pinned_free_blocks == 0
    # Lapsed pins are the next blocks evicted.
    assert [b.block_id for b in kv.pool.free_queue][:2] == [1, 2]
    kv.check_integrity(set())


def test_reuse_by_a_pinning_request_renews_the_pin_and_others_keep_it() -> None:
    clock = Clock()
    kv = manager(7, clock)
    fill(kv, "agent", [1, 2, 3, 4, 5], pin_seconds=DAY)
    clock.now += DAY / 2
    fill(kv, "agent-turn-2", [1, 2, 3, 4, 6], pin_seconds=DAY)  # renewed until now + DAY
    fill(kv, "someone-else", [1, 2, 3, 4, 7])  # an unpinned reuse keeps the pin it found
    assert {b.block_id for b in kv.pool.pinned_queue} == {1, 2}
    assert all(b.pinned_until == clock.now + DAY for b in kv.pool.pinned_queue)
    kv.check_integrity(set())


def test_the_protected_share_of_the_pool_is_bounded() -> None:
    clock = Clock()
    kv = manager(9, clock, max_pinned_fraction=0.25)  # 8 usable: at most 2 protected
    fill(kv, "a", [1, 2, 3, 4, 5], pin_seconds=DAY)  # pins 2 blocks
    fill(kv, "b", [6, 7, 8, 9, 10], pin_seconds=DAY)  # 2 more: the oldest 2 pins fall back
    assert kv.pool.num_pinned_free_blocks == 2
    protected = {b.key.token_ids for b in kv.pool.pinned_queue if b.key}
    assert protected == {(6, 7), (8, 9)}
    kv.check_integrity(set())


def test_retention_is_validated_and_mapped_to_seconds() -> None:
    assert SamplingParams(prompt_cache_retention="24h").cache_pin_seconds == DAY
    assert SamplingParams(prompt_cache_retention="in_memory").cache_pin_seconds == 0.0
    assert SamplingParams().cache_pin_seconds == 0.0
    with pytest.raises(InvalidRequestError) as err:
        SamplingParams(prompt_cache_retention="forever").validate(100)
    assert err.value.param == "prompt_cache_retention"
