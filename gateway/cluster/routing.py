"""Which replica a request goes to: the routing policy, as plain Python (no Ray).

A request carries a RouteKey: a session key (OpenAI `prompt_cache_key`, else an `x-session-id`
header) or, without one, the hash chain of its prompt's first KV blocks, hashed exactly as the
engine's prefix cache hashes them, so a chain names the blocks a replica holds.

The policy, in order:
1. Affinity: the replica that last served the same session, or the deepest recorded block of the
   prompt, keeps the request while its load exceeds the least-loaded replica's by at most
   `imbalance` requests. A prompt-only match counts when it covers at least `min_match` of the
   prompt's hashed blocks, so a short shared preamble (the template's default system prompt)
   does not pin every conversation to one replica.
2. Otherwise the less loaded of two replicas drawn at random (power of two choices); ties go to
   the replica that has started fewer sessions, so new conversations spread evenly, then to the
   one with less of its KV cache in use.

The router adapter (router.py) feeds loads in and turns the ranking into Ray Serve's ranks.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RouteKey:
    """What a request is routed by. session: "cache:<prompt_cache_key>" or "session:<id>";
    blocks: chain hashes of the prompt's leading full blocks (empty when a session key is sent)."""

    session: str | None = None
    blocks: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        return self.session is None and not self.blocks


@dataclass(frozen=True)
class RoutingPolicy:
    imbalance: int = 4  # affinity holds while owner load - least load <= imbalance
    min_match: float = 0.5  # share of hashed blocks a prompt-only match must cover
    max_entries: int = 200_000  # remembered keys (LRU); each request records about log2(blocks) + 2


@dataclass(frozen=True)
class Decision:
    order: tuple[str, ...]  # replicas, most preferred first
    reason: str  # "affinity", "balance" (affinity yielded to load) or "new" (nothing matched)


def recorded_depths(num_blocks: int) -> list[int]:
    """Depths (1-based block counts) at which a chain is remembered: powers of two and the full
    chain. A later turn extends the earlier prompt, so its deepest recorded block is found again;
    the powers of two let prompts that share only a long opening (a system prompt) find it too,
    while the table stays small."""
    depths = {num_blocks} if num_blocks else set()
    depth = 1
    while depth < num_blocks:
        depths.add(depth)
        depth *= 2
    return sorted(depths)


@dataclass
class AffinityTable:
    """Session keys and block hashes -> the replica that last served them (bounded, LRU)."""

    max_entries: int = 200_000
    _owners: OrderedDict[object, str] = field(default_factory=OrderedDict)
    _sessions_started: dict[str, int] = field(default_factory=dict)

    def owner(self, key: RouteKey, live: Mapping[str, object], min_match: float) -> str | None:
        """The live replica holding this key, or None."""
        if key.session is not None:
            return self._live(key.session, live)
        # every depth is probed, deepest first: earlier prompts recorded their own depths
        blocks = key.blocks
        floor = max(1, math.ceil(min_match * len(blocks)))
        for depth in range(len(blocks), floor - 1, -1):
            replica = self._live(blocks[depth - 1], live)
            if replica is not None:
                return replica
        return None

    def _live(self, entry: object, live: Mapping[str, object]) -> str | None:
        replica = self._owners.get(entry)
        if replica is None or replica not in live:
            return None
        self._owners.move_to_end(entry)
        return replica

    def remember(self, key: RouteKey, replica: str, new_session: bool) -> None:
        entries: list[object] = [key.session] if key.session is not None else [
            key.blocks[d - 1] for d in recorded_depths(len(key.blocks))]
        for entry in entries:
            self._owners[entry] = replica
            self._owners.move_to_end(entry)
        while len(self._owners) > self.max_entries:
            self._owners.popitem(last=False)
        if new_session:
            self._sessions_started[replica] = self._sessions_started.get(replica, 0) + 1

    def sessions_started(self, replica: str) -> int:
        return self._sessions_started.get(replica, 0)

    def forget(self, replica: str) -> None:
        """A replica is gone: its entries stop matching (they are dropped lazily) and its count resets."""
        self._sessions_started.pop(replica, None)


def rank(key: RouteKey, loads: Mapping[str, float], table: AffinityTable, policy: RoutingPolicy,
         rng: random.Random | None = None, kv_usage: Mapping[str, float] | None = None) -> Decision:
    """Order the replicas in `loads` (replica -> requests in flight) for this request; `kv_usage`
    (replica -> share of its KV cache in use) breaks ties between equally loaded replicas."""
    if not loads:
        return Decision((), "new")
    rng = rng or random.Random()
    kv = kv_usage or {}
    owner = None if key.empty else table.owner(key, loads, policy.min_match)
    least = min(loads.values())
    if owner is not None and loads[owner] - least <= policy.imbalance:
        rest = _by_load([r for r in loads if r != owner], loads, kv, table, rng)
        return Decision((owner, *rest), "affinity")
    pair = two_choices(list(loads), rng)
    first = _by_load(pair, loads, kv, table, rng)
    rest = _by_load([r for r in loads if r not in pair], loads, kv, table, rng)
    return Decision((*first, *rest), "new" if owner is None else "balance")


def two_choices(replicas: Sequence[str], rng: random.Random) -> list[str]:
    return list(replicas) if len(replicas) <= 2 else rng.sample(list(replicas), 2)


def _by_load(replicas: Sequence[str], loads: Mapping[str, float], kv: Mapping[str, float],
             table: AffinityTable, rng: random.Random) -> list[str]:
    """Least load first; then fewest sessions started (spreads new conversations); then least KV
    in use; then random."""
    return sorted(replicas, key=lambda r: (loads[r], table.sessions_started(r), kv.get(r, 0.0), rng.random()))
