"""PrefixSessionRouter: Ray Serve's RequestRouter with sluicegate's prefix/session policy.

The policy itself is routing.py (plain Python, unit-tested); this adapter feeds it each
replica's load and returns its ranking as Ray Serve's ranks (one replica per rank, so the
preferred replica is tried first and the next ones only when it refuses: its queue is full).

Load of a replica = requests in flight there: Ray Serve's own count (what this router sent, and
what the replica said when probed; exact and current), or when Serve has no fresh count, the
engine's waiting + running from record_routing_stats() (a second old); plus the requests this
router has chosen it for but not yet sent, so a burst routed in one instant sees its own choices.
The KV use each replica reports breaks ties.

Ray Serve pickles this module by value into the process that holds the deployment handle (the
ingress); the policy and messages modules it imports are imported there by name.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from sluicegate.gateway.cluster.routing import AffinityTable, RouteKey, RoutingPolicy, rank


@dataclass
class _Choice:
    replica: str
    reason: str
    request: Any  # the ForwardedRequest (the object the ingress holds)
    at: float = field(default_factory=time.monotonic)


UNCONFIRMED_S = 60.0  # a choice never confirmed (the request was cancelled before it was sent) is dropped


class PrefixSessionRouter(RequestRouter):
    def initialize_state(self, imbalance: int = 4, max_entries: int = 200_000, **_: Any) -> None:
        self._policy = RoutingPolicy(imbalance=imbalance, max_entries=max_entries)
        self._table = AffinityTable(max_entries=max_entries)
        self._chosen: dict[str, _Choice] = {}  # internal request id -> choice not yet confirmed
        self._rng = random.Random()

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is not None:
            pending_request.routing_context.should_backoff = True  # every replica refused: back off
            self._chosen.pop(pending_request.metadata.internal_request_id, None)  # chosen again: not load
        self._drop_unconfirmed()
        request = _forwarded(pending_request)
        by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
        avoid = request.avoid if request is not None else frozenset()
        live = {rid: r for rid, r in by_id.items() if rid not in avoid} or by_id
        key = request.key if request is not None else RouteKey()
        decision = rank(key, self._loads(live), self._table, self._policy, self._rng, self._kv_usage(live))
        if pending_request is not None and request is not None and decision.order:
            self._chosen[pending_request.metadata.internal_request_id] = _Choice(
                decision.order[0], decision.reason, request)
        return [[live[rid]] for rid in decision.order]

    def _drop_unconfirmed(self) -> None:
        cutoff = time.monotonic() - UNCONFIRMED_S
        for request_id in [k for k, c in self._chosen.items() if c.at < cutoff]:
            del self._chosen[request_id]

    def _loads(self, replicas: dict[str, RunningReplica]) -> dict[str, float]:
        pending: dict[str, int] = {}
        for choice in self._chosen.values():
            pending[choice.replica] = pending.get(choice.replica, 0) + 1
        loads = {}
        for rid, replica in replicas.items():
            counted = self._replica_queue_len_cache.get(replica.replica_id)
            if counted is None:  # no fresh count from Ray Serve: the replica's last report
                stats = replica.routing_stats or {}
                counted = int(stats.get("waiting", 0)) + int(stats.get("running", 0))
            loads[rid] = float(counted + pending.get(rid, 0))
        return loads

    @staticmethod
    def _kv_usage(replicas: dict[str, RunningReplica]) -> dict[str, float]:
        return {rid: float((r.routing_stats or {}).get("kv_usage", 0.0)) for rid, r in replicas.items()}

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID, result: Any) -> None:
        self._confirm(pending_request.metadata.internal_request_id, replica_id.unique_id)

    def on_request_completed(self, replica_id: ReplicaID, internal_request_id: str) -> None:
        # without Ray Serve's rejection protocol on_request_routed is not called: confirm here
        self._confirm(internal_request_id, replica_id.unique_id)

    def _confirm(self, internal_request_id: str, replica: str) -> None:
        choice = self._chosen.pop(internal_request_id, None)
        if choice is None:
            return
        choice.request.routed_to = replica
        if not choice.request.key.empty:
            new_session = choice.reason != "affinity" or replica != choice.replica
            self._table.remember(choice.request.key, replica, new_session)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._table.forget(replica_id.unique_id)


def _forwarded(pending_request: PendingRequest | None) -> Any:
    """The ForwardedRequest among the call's arguments (the ingress passes it first), or None."""
    if pending_request is None or not pending_request.args:
        return None
    arg = pending_request.args[0]
    return arg if isinstance(getattr(arg, "key", None), RouteKey) else None
