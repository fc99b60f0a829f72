"""Prefix-cache keys are hashed once per block per request, however often it is looked up.

A waiting request that cannot get blocks is retried every step; its block-key chain lives on the
Request, so retries, the commit after the forward and re-admission after preemption reuse it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import sluicegate.engine.kv_cache.manager as manager_module
from sluicegate.engine.config import SchedulerConfig
from sluicegate.engine.detokenizer import IncrementalDetokenizer
from sluicegate.engine.kv_cache.block_pool import BlockKey, hash_block
from sluicegate.engine.kv_cache.manager import KVCacheManager
from sluicegate.engine.params import SamplingParams
from sluicegate.engine.request import Request, RequestStatus
from sluicegate.engine.scheduler import Scheduler

BLOCK = 4
PREFIX = list(range(100, 108))  # two full blocks


class _Ids:
    """The scheduler never detokenizes; the detokenizer only needs something to hold."""

    def decode(self, token_ids: Any, skip_special_tokens: bool = True, **kwargs: Any) -> str:
        return ""


def make_request(request_id: str, prompt: list[int]) -> Request:
    return Request(request_id=request_id, prompt_token_ids=prompt, params=SamplingParams(), max_tokens=8,
                   detokenizer=IncrementalDetokenizer(_Ids()), eos_token_ids=frozenset())


def chain(token_ids: list[int], num_blocks: int) -> list[BlockKey]:
    keys: list[BlockKey] = []
    for i in range(num_blocks):
        parent = keys[-1].hash_value if keys else None
        keys.append(hash_block(parent, tuple(token_ids[i * BLOCK:(i + 1) * BLOCK])))
    return keys


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, ...]]]:
    """The token tuples the manager hashes, in order (the real hash_block, counted)."""
    calls: list[tuple[int, ...]] = []

    def counting(parent: int | None, token_ids: tuple[int, ...], extra: tuple[object, ...] = ()) -> BlockKey:
        calls.append(token_ids)
        return hash_block(parent, token_ids, extra)

    monkeypatch.setattr(manager_module, "hash_block", counting)
    yield calls


def test_a_blocked_request_hashes_each_block_once(hashed: list[tuple[int, ...]]) -> None:
    kv = KVCacheManager(num_blocks=5, block_size=BLOCK)  # 4 usable blocks
    assert kv.allocate("warm", 8)
    kv.commit("warm", PREFIX, 8)  # PREFIX's two blocks are now cached
    kv.free("warm")
    assert kv.allocate("hog", 8)  # takes the two uncached free blocks
    hashed.clear()

    scheduler = Scheduler(SchedulerConfig(), kv)
    prompt = PREFIX + [1, 2, 3, 4, 5, 6]  # 14 tokens: 2 cached blocks + 2 more needed, 2 free
    request = make_request("b", prompt)
    scheduler.add(request)
    for _ in range(6):
        out = scheduler.schedule()
        assert out.scheduled == [] and scheduler.waiting[0] is request
    # lookups went as far as the first miss (block 3), each block hashed on the first try only
    assert hashed == [tuple(prompt[0:4]), tuple(prompt[4:8]), tuple(prompt[8:12])]
    assert request.block_keys == chain(prompt, 3)

    kv.free("hog")
    out = scheduler.schedule()
    assert out.scheduled == [(request, 6)] and request.num_cached_tokens == 8
    scheduler.update(out)  # commit: block 3 is full now, its key was hashed during the lookups
    assert len(hashed) == 3

    # the committed block is found by the next request with the same prompt
    twin = make_request("c", prompt + [9])
    assert [b.block_id for b in kv.find_cached_prefix("c", twin.token_ids)] == kv.block_table("b")[:3]


def test_readmission_after_preemption_reuses_the_keys(hashed: list[tuple[int, ...]]) -> None:
    kv = KVCacheManager(num_blocks=8, block_size=BLOCK)
    scheduler = Scheduler(SchedulerConfig(), kv)
    prompt = PREFIX + [1, 2, 3, 4, 5]  # 13 tokens
    request = make_request("a", prompt)
    scheduler.add(request)
    out = scheduler.schedule()
    scheduler.update(out)  # 13 computed: 3 full blocks registered
    assert len(hashed) == 3  # the first lookup found nothing, the commit hashed the rest once
    request.token_ids += [6, 7, 8]  # a decoded token fills block 4 (16 tokens)

    kv.free("a")  # preempted: blocks back to the free queue, still cached
    request.status, request.num_computed_tokens = RequestStatus.PREEMPTED, 0
    scheduler.running.remove(request)
    scheduler.waiting.appendleft(request)
    out = scheduler.schedule()
    assert out.scheduled == [(request, 4)] and request.num_computed_tokens == 12
    scheduler.update(out)
    assert len(hashed) == 4  # only the new block 4, hashed once
    assert request.block_keys == chain(request.token_ids, 4)
    kv.check_integrity({"a"})


def test_keys_without_a_request_cache_match_the_cached_ones() -> None:
    """Callers that pass no block_keys (the manager's older use) get the same hits and commits."""
    with_cache, without = KVCacheManager(6, BLOCK), KVCacheManager(6, BLOCK)
    keys: list[BlockKey] = []
    for kv, cache in ((with_cache, keys), (without, None)):
        assert kv.allocate("a", 10)
        kv.commit("a", PREFIX + [1, 2], 10, block_keys=cache)
        kv.free("a")
        hits = kv.find_cached_prefix("b", PREFIX + [1, 2, 3], block_keys=None if cache is None else [])
        assert [h.block_id for h in hits] == [1, 2]
    assert keys == chain(PREFIX, 2)
    assert with_cache.pool.cached.keys() == without.pool.cached.keys()
