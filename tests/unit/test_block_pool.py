"""Block pool and KV cache manager: exact block ids, eviction order, ref counts, collision guard."""

from __future__ import annotations

import pytest

from sluicegate.engine.kv_cache.block_pool import BlockPool, hash_block
from sluicegate.engine.kv_cache.manager import KVCacheManager


def test_allocation_order_and_free_order() -> None:
    pool = BlockPool(6)
    a = pool.allocate(2)
    assert [b.block_id for b in a] == [1, 2]  # block 0 is the pinned null block
    b = pool.allocate(3)
    assert [x.block_id for x in b] == [3, 4, 5]
    with pytest.raises(RuntimeError):
        pool.allocate(1)
    pool.free(reversed(a))  # tail first
    assert [x.block_id for x in pool.free_queue] == [2, 1]
    assert [x.block_id for x in pool.allocate(1)] == [2]


def test_freed_blocks_stay_cached_and_lru_evicts_oldest() -> None:
    kv = KVCacheManager(num_blocks=5, block_size=2)
    tokens_a = [1, 2, 3, 4, 5]
    assert kv.allocate("a", 5)
    assert kv.block_table("a") == [1, 2, 3]
    kv.commit("a", tokens_a, 5)  # blocks 1, 2 full -> cached; block 3 partial
    kv.free("a")
    assert [b.block_id for b in kv.pool.free_queue] == [4, 3, 2, 1]
    # Same prefix: hits blocks 1, 2 (never the block holding the last prompt token).
    hits = kv.find_cached_prefix("b", [1, 2, 3, 4, 9])
    assert [h.block_id for h in hits] == [1, 2]
    assert kv.allocate("b", 5, hits)
    assert kv.block_table("b") == [1, 2, 4]
    assert hits[0].ref_count == 1
    kv.check_integrity({"b"})
    kv.free("b")
    # A prompt that is exactly two blocks may only reuse the first: its last token needs logits.
    hits = kv.find_cached_prefix("c", [1, 2, 3, 4])
    assert [h.block_id for h in hits] == [1]
    # Eviction: allocating all free blocks hands out the least recently freed first and drops keys.
    order = [b.block_id for b in kv.pool.free_queue]
    taken = kv.pool.allocate(4)
    assert [b.block_id for b in taken] == order
    assert kv.pool.cached == {}


def test_shared_prefix_ref_counts() -> None:
    kv = KVCacheManager(num_blocks=8, block_size=2)
    assert kv.allocate("a", 4)
    kv.commit("a", [7, 7, 8, 8], 4)
    hits = kv.find_cached_prefix("b", [7, 7, 8, 8, 9])
    assert kv.allocate("b", 5, hits)
    assert [b.ref_count for b in hits] == [2, 2]
    kv.check_integrity({"a", "b"})
    kv.free("a")
    assert [b.ref_count for b in hits] == [1, 1]
    kv.free("b")
    kv.check_integrity(set())


def test_collision_guard_compares_token_ids() -> None:
    pool = BlockPool(4)
    block = pool.allocate(1)[0]
    key = hash_block(None, (1, 2))
    pool.register(block, key)
    forged = type(key)(key.hash_value, None, (3, 4))  # same hash, different tokens
    assert pool.lookup(key) is block
    assert pool.lookup(forged) is None


def test_allocate_failure_changes_nothing() -> None:
    kv = KVCacheManager(num_blocks=3, block_size=2)
    assert kv.allocate("a", 4)
    assert not kv.allocate("b", 2)
    assert not kv.holds("b")
    kv.check_integrity({"a"})


def test_integrity_check_catches_a_leak() -> None:
    kv = KVCacheManager(num_blocks=4, block_size=2)
    kv.pool.allocate(1)  # taken behind the manager's back
    with pytest.raises(AssertionError):
        kv.check_integrity(set())
