"""The replica router's policy and keys, without Ray: affinity by session or prompt blocks, the
imbalance rule, two choices for new sessions, and block hashes equal to the engine's own."""

from __future__ import annotations

import json
import random

from sluicegate.engine.kv_cache.manager import KVCacheManager
from sluicegate.gateway.cluster.keys import PromptHasher, block_chain, route_key
from sluicegate.gateway.cluster.routing import (
    AffinityTable,
    Decision,
    RouteKey,
    RoutingPolicy,
    rank,
    recorded_depths,
)

POLICY = RoutingPolicy(imbalance=2)
IDLE = {"a": 0.0, "b": 0.0}


def route(table: AffinityTable, key: RouteKey, loads: dict[str, float], policy: RoutingPolicy = POLICY,
          seed: int = 0) -> tuple[str, str]:
    """Rank, then record the first choice as the router does once the request is sent."""
    decision = rank(key, loads, table, policy, random.Random(seed))
    table.remember(key, decision.order[0], decision.reason != "affinity")
    return decision.order[0], decision.reason


def test_recorded_depths_are_powers_of_two_and_the_full_chain() -> None:
    assert recorded_depths(0) == []
    assert recorded_depths(1) == [1]
    assert recorded_depths(11) == [1, 2, 4, 8, 11]
    assert recorded_depths(16) == [1, 2, 4, 8, 16]


def test_a_session_sticks_to_its_replica() -> None:
    table = AffinityTable()
    key = RouteKey(session="cache:agent-1")
    first, reason = route(table, key, IDLE)
    assert reason == "new"
    for _ in range(5):
        assert route(table, key, IDLE) == (first, "affinity")


def test_new_sessions_spread_over_idle_replicas() -> None:
    for seed in range(20):
        table = AffinityTable()
        a, _ = route(table, RouteKey(session="session:1"), IDLE, seed=seed)
        b, _ = route(table, RouteKey(session="session:2"), IDLE, seed=seed)
        assert {a, b} == {"a", "b"}


def test_a_later_turn_finds_the_replica_of_the_earlier_prompt() -> None:
    table = AffinityTable()
    turn1 = tuple(range(1000, 1011))  # 11 blocks: recorded at depths 1, 2, 4, 8, 11
    owner, _ = route(table, RouteKey(blocks=turn1), IDLE)
    turn2 = turn1 + tuple(range(2000, 2008))  # extends turn 1 (a deeper chain)
    assert route(table, RouteKey(blocks=turn2), {"a": 1.0, "b": 0.0}) == (owner, "affinity")


def test_a_shared_opening_only_breaks_ties() -> None:
    table = AffinityTable()
    system = tuple(range(1, 9))  # 8 blocks every conversation shares (system prompt, tools)
    owner, _ = route(table, RouteKey(blocks=system + (100, 101)), IDLE)
    other = "b" if owner == "a" else "a"
    newcomer = RouteKey(blocks=system + (200, 201))
    match = table.match(newcomer, IDLE)
    assert match.owner is None and match.shared == {owner: 8}  # not a continuation: no affinity
    # the owner has started one session more: the newcomer goes to the other replica
    assert rank(newcomer, IDLE, table, POLICY, random.Random(0)).order[0] == other
    table.remember(RouteKey(session="x"), other, True)  # sessions even again: the shared blocks decide
    assert rank(newcomer, IDLE, table, POLICY, random.Random(0)) == Decision((owner, other), "new")
    assert rank(newcomer, {owner: 1.0, other: 0.0}, table, POLICY, random.Random(0)).order[0] == other


def test_affinity_yields_when_its_replica_is_too_busy() -> None:
    table = AffinityTable()
    key = RouteKey(session="cache:hot")
    owner, _ = route(table, key, IDLE)
    other = "b" if owner == "a" else "a"
    assert route(table, key, {owner: 2.0, other: 0.0}) == (owner, "affinity")  # within the imbalance
    assert route(table, key, {owner: 3.0, other: 0.0}) == (other, "balance")  # beyond it: moves
    assert route(table, key, {owner: 0.0, other: 0.0}) == (other, "affinity")  # and stays there


def test_two_choices_take_the_less_loaded() -> None:
    loads = {"a": 5.0, "b": 1.0, "c": 3.0}
    for seed in range(10):
        decision = rank(RouteKey(), loads, AffinityTable(), POLICY, random.Random(seed))
        assert decision.reason == "new" and sorted(decision.order) == ["a", "b", "c"]
        first, second = decision.order[:2]
        assert loads[first] <= loads[second]  # the better of the two drawn comes first
        assert first != "a"  # the busiest can never win a draw of two


def test_a_gone_replica_owns_nothing() -> None:
    table = AffinityTable()
    key = RouteKey(session="s")
    owner, _ = route(table, key, IDLE)
    table.forget(owner)
    survivor = {r: 0.0 for r in IDLE if r != owner}
    assert route(table, key, survivor)[1] == "new"


def test_the_table_is_bounded() -> None:
    table = AffinityTable(max_entries=10)
    for i in range(100):
        table.remember(RouteKey(session=str(i)), "a", True)
    assert len(table._owners) == 10
    assert table.match(RouteKey(session="99"), IDLE).owner == "a"
    assert table.match(RouteKey(session="0"), IDLE).owner is None


def test_block_chain_names_the_blocks_the_engine_caches() -> None:
    block = 4
    ids = list(range(100, 119))  # 4 full blocks and 3 tokens
    kv = KVCacheManager(num_blocks=16, block_size=block)
    assert kv.allocate("r", len(ids))
    kv.commit("r", ids, len(ids))
    assert set(block_chain(ids, block, 64)) == set(kv.pool.cached)
    assert len(block_chain(ids, block, 2)) == 2


class _Renderer:
    """Stands in for ChatRenderer: one token per character of the messages' text."""

    def __init__(self) -> None:
        self.tokenizer = lambda text: {"input_ids": [ord(c) for c in text]}

    def render(self, messages: object, tools: object, kwargs: object) -> str:
        return "".join(str(m.content) for m in messages)  # type: ignore[attr-defined]

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_route_key_order_cache_key_then_session_header_then_prompt_blocks() -> None:
    hasher = PromptHasher(_Renderer(), block_size=4, max_blocks=8)
    chat = {"model": "m", "messages": [{"role": "user", "content": "abcdefghij"}]}
    path = "/v1/chat/completions"
    assert route_key(path, {"x-session-id": "s"}, json.dumps({**chat, "prompt_cache_key": "k"}).encode(),
                     hasher) == RouteKey(session="cache:k")
    assert route_key(path, {"x-session-id": "s"}, json.dumps(chat).encode(), hasher) == RouteKey(session="session:s")
    by_prompt = route_key(path, {}, json.dumps(chat).encode(), hasher)
    assert by_prompt.blocks == block_chain([ord(c) for c in "abcdefghij"], 4, 8) and len(by_prompt.blocks) == 2
    text = route_key("/v1/completions", {}, json.dumps({"model": "m", "prompt": "abcdefgh"}).encode(), hasher)
    assert text.blocks == by_prompt.blocks
    assert route_key(path, {}, b"not json", hasher).empty
    assert route_key(path, {}, json.dumps({"messages": "wrong"}).encode(), hasher).empty
    assert route_key("/v1/models", {}, b"", hasher).empty


def test_equal_loads_go_to_the_replica_with_less_kv_in_use() -> None:
    for seed in range(10):
        decision = rank(RouteKey(session="new"), IDLE, AffinityTable(), POLICY, random.Random(seed),
                        kv_usage={"a": 0.7, "b": 0.2})
        assert decision.order == ("b", "a")


def test_a_turn_that_adds_much_more_than_it_shares_still_continues_its_conversation() -> None:
    table = AffinityTable()
    turn1 = (1, 2, 3)
    owner, _ = route(table, RouteKey(blocks=turn1), IDLE)
    turn2 = turn1 + tuple(range(100, 130))  # a long tool result: 3 of 33 blocks were seen before
    assert route(table, RouteKey(blocks=turn2), IDLE) == (owner, "affinity")
