"""Which replica a request goes to: the routing policy, as plain Python (no Ray).

A request carries a RouteKey: a session key (OpenAI `prompt_cache_key`, else an `x-session-id`
header) or, without one, the hash chain of its prompt's first KV blocks, hashed exactly as the
engine's prefix cache hashes them, so a chain names the blocks a replica holds.

The policy, in order:
1. Affinity: a request whose session key was seen before, or whose prompt extends a whole earlier
   prompt (the next turn of a conversation: its chain passes through the earlier chain's last
   block), goes to the replica that served it, while that replica's load exceeds the least-loaded
   replica's by at most `imbalance` requests.
2. Otherwise the less loaded of two replicas drawn at random (power of two choices). Ties go to
   the replica that has started fewer sessions (new conversations spread evenly), then to the one
   holding the longest part of the prompt (a system prompt other conversations share), then to the
   one with less of its KV cache in use.

A shared opening alone (system prompt, tools) does not pin a new conversation: pinning it would
keep its later turns on a replica chosen for a prefix that every replica caches after its first
few requests anyway, and would send every conversation to one replica (the known failure of
prefix affinity). The router adapter (router.py) feeds loads in and turns the ranking into Ray
Serve's ranks.
"""

from __future__ import annotations

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
    max_entries: int = 200_000  # remembered keys (LRU); each request records about log2(blocks) + 1


@dataclass(frozen=True)
class Decision:
    order: tuple[str, ...]  # replicas, most preferred first
    reason: str  # "affinity", "balance" (affinity yielded to load) or "new" (no conversation matched)


@dataclass(frozen=True)
class Match:
    owner: str | None  # the replica of the conversation this request continues
    shared: dict[str, int]  # replica -> deepest block of this prompt it served in another conversation


def recorded_depths(num_blocks: int) -> list[int]:
    """Depths (1-based block counts) at which a chain is remembered: powers of two and the full
    chain. A later turn extends the earlier prompt, so it passes through the full chain's last
    block; the powers of two let a prompt that shares only an opening find who served it."""
    depths = {num_blocks} if num_blocks else set()
    depth = 1
    while depth < num_blocks:
        depths.add(depth)
        depth *= 2
    return sorted(depths)


@dataclass
class AffinityTable:
    """Session keys and block hashes -> (replica that last served them, whether a whole prompt
    ended there). Bounded, least recently used first out."""

    max_entries: int = 200_000
    _owners: OrderedDict[object, tuple[str, bool]] = field(default_factory=OrderedDict)
    _sessions_started: dict[str, int] = field(default_factory=dict)

    def match(self, key: RouteKey, live: Mapping[str, object]) -> Match:
        if key.session is not None:
            entry = self._get(key.session, live)
            return Match(entry[0] if entry else None, {})
        shared: dict[str, int] = {}
        # every depth is probed, deepest first: earlier prompts recorded their own depths
        for depth in range(len(key.blocks), 0, -1):
            entry = self._get(key.blocks[depth - 1], live)
            if entry is None:
                continue
            replica, whole_prompt = entry
            if whole_prompt:
                return Match(replica, shared)
            shared.setdefault(replica, depth)
        return Match(None, shared)

    def _get(self, entry: object, live: Mapping[str, object]) -> tuple[str, bool] | None:
        value = self._owners.get(entry)
        if value is None or value[0] not in live:
            return None
        self._owners.move_to_end(entry)
        return value

    def remember(self, key: RouteKey, replica: str, new_session: bool) -> None:
        if key.session is not None:
            self._put(key.session, replica, True)
        else:
            depths = recorded_depths(len(key.blocks))
            for depth in depths:
                self._put(key.blocks[depth - 1], replica, depth == depths[-1])
        while len(self._owners) > self.max_entries:
            self._owners.popitem(last=False)
        if new_session:
            self._sessions_started[replica] = self._sessions_started.get(replica, 0) + 1

    def _put(self, entry: object, replica: str, whole_prompt: bool) -> None:
        old = self._owners.get(entry)
        keep = old is not None and old[0] == replica and old[1]  # still where an earlier prompt ended
        self._owners[entry] = (replica, whole_prompt or keep)
        self._owners.move_to_end(entry)

    def sessions_started(self, replica: str) -> int:
        return self._sessions_started.get(replica, 0)

    def forget(self, replica: str) -> None:
        """A replica is gone: its entries stop matching (they are dropped lazily) and its count resets."""
        self._sessions_started.pop(replica, None)


def rank(key: RouteKey, loads: Mapping[str, float], table: AffinityTable, policy: RoutingPolicy,
         rng: random.Random | None = None, kv_usage: Mapping[str, float] | None = None) -> Decision:
    """Order the replicas in `loads` (replica -> requests in flight) for this request; `kv_usage`
    (replica -> share of its KV cache in use) breaks the last ties."""
    if not loads:
        return Decision((), "new")
    rng = rng or random.Random()
    match = Match(None, {}) if key.empty else table.match(key, loads)

    def preference(replica: str) -> tuple[float, int, int, float, float]:
        return (loads[replica], table.sessions_started(replica), -match.shared.get(replica, 0),
                (kv_usage or {}).get(replica, 0.0), rng.random())

    owner = match.owner
    if owner is not None and loads[owner] - min(loads.values()) <= policy.imbalance:
        return Decision((owner, *sorted((r for r in loads if r != owner), key=preference)), "affinity")
    pair = two_choices(list(loads), rng)
    rest = sorted((r for r in loads if r not in pair), key=preference)
    return Decision((*sorted(pair, key=preference), *rest), "new" if owner is None else "balance")


def two_choices(replicas: Sequence[str], rng: random.Random) -> list[str]:
    return list(replicas) if len(replicas) <= 2 else rng.sample(list(replicas), 2)
