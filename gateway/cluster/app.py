"""The Ray Serve application behind `sluicegate serve --replicas N`, also runnable with `serve run`.

    serve run sluicegate.gateway.cluster.app:build replicas=2 num_threads=1

`build` takes `sluicegate serve`'s flags as key=value pairs (dashes or underscores; true/false for
switches), so both ways of starting replicas accept the same settings. The application is two
deployments: `ingress` (one replica, no CPU reserved: it keys and relays requests) and `engine`
(N replicas, each an engine with --num-threads torch threads and that many Ray CPUs).
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from sluicegate.gateway.settings import ServeSettings

ROUTERS = ("prefix", "pow2")  # sluicegate's prefix/session router; Ray Serve's default (for comparison)
ROUTING_STATS_PERIOD_S = 1.0  # how often each replica reports its queue and KV use to the router
INGRESS_MAX_ONGOING = 10_000  # the ingress only relays: it should never be what queues requests
HEALTH_CHECK_PERIOD_S = 2.0  # a dead replica is noticed (and replaced) this soon; Serve's default is 10 s


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def replica_threads(settings: ServeSettings) -> int:
    """--num-threads per replica; unset, the machine's cores shared out (at least one each)."""
    return settings.engine.num_threads or max(1, available_cores() // (settings.replicas or 1))


def with_replica_threads(settings: ServeSettings) -> ServeSettings:
    return replace(settings, engine=replace(settings.engine, num_threads=replica_threads(settings)))


def router_config(settings: ServeSettings, router: str = "prefix") -> Any:
    from ray.serve.config import RequestRouterConfig

    if router not in ROUTERS:
        raise ValueError(f"router must be one of {ROUTERS}, got {router!r}")
    # keyword dicts: Ray annotates RequestRouterConfig(**kwargs) as taking dicts only
    options: dict[str, Any] = {"request_routing_stats_period_s": ROUTING_STATS_PERIOD_S}
    if router == "prefix":
        options |= {"request_router_class": "sluicegate.gateway.cluster.router.PrefixSessionRouter",
                    "request_router_kwargs": {"imbalance": settings.cluster.route_imbalance}}
    return RequestRouterConfig(**options)


def build_app(settings: ServeSettings, router: str = "prefix") -> Any:
    """The application (ingress bound to N engine replicas) for these settings."""
    from ray import serve

    from sluicegate.gateway.cluster.ingress import Ingress
    from sluicegate.gateway.cluster.replica import EngineReplica

    settings = with_replica_threads(settings)
    threads = settings.engine.num_threads
    engine = serve.deployment(
        name="engine", num_replicas=settings.replicas or 1,
        # the engine queues and batches by itself; beyond its running cap, requests wait in the
        # router instead, where they can still go to another replica
        max_ongoing_requests=settings.engine.scheduler.max_num_seqs,
        ray_actor_options={"num_cpus": threads},
        request_router_config=router_config(settings, router),
        graceful_shutdown_timeout_s=settings.graceful_shutdown_s,
        health_check_period_s=HEALTH_CHECK_PERIOD_S,
    )(EngineReplica).bind(settings)
    ingress = serve.deployment(name="ingress", num_replicas=1, max_ongoing_requests=INGRESS_MAX_ONGOING,
                               ray_actor_options={"num_cpus": 0})(Ingress)
    return ingress.bind(engine, settings)


def settings_from_pairs(pairs: dict[str, Any]) -> ServeSettings:
    """`sluicegate serve` settings from key=value pairs (what `serve run module:build k=v` passes)."""
    from sluicegate.gateway.cli import parse_args, settings_from_args

    argv = ["serve"]
    for key, value in pairs.items():
        flag = "--" + key.replace("_", "-")
        text = str(value).lower()
        if text in ("true", "false"):
            argv.append(flag if text == "true" else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    settings = settings_from_args(parse_args(argv))
    return settings if settings.replicas else replace(settings, replicas=1)


def build(args: dict[str, Any]) -> Any:
    """Application builder for `serve run sluicegate.gateway.cluster.app:build key=value ...`."""
    return build_app(settings_from_pairs(args))
