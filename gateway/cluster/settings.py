"""ClusterSettings: the knobs of `sluicegate serve --replicas N` (Ray and the router), as flags."""

from __future__ import annotations

from dataclasses import dataclass

from sluicegate.engine.option import option


@dataclass(frozen=True)
class ClusterSettings:
    """How replicas are started and how the router places requests on them."""

    route_imbalance: int = option(
        4, help="with --replicas: a conversation (session key, or a prompt that extends an earlier one) stays "
                "on its replica while that replica has at most this many more requests in flight than the "
                "least-loaded one")
    route_prefix_blocks: int = option(
        256, help="with --replicas: KV blocks at the start of a prompt that are hashed to recognise its "
                  "conversation (prompts without prompt_cache_key or x-session-id)")
    ray_address: str | None = option(
        None, help="with --replicas: join this Ray cluster (e.g. ray://head:10001 or auto) instead of starting one")
    ray_object_store_mb: int = option(
        256, help="with --replicas: object store memory of the local Ray, in MiB (requests and replies pass "
                  "through it; the model does not)")
