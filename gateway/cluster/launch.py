"""`sluicegate serve --replicas N`: start (or join) Ray, run the application, wait for a signal."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from sluicegate.gateway.cluster.app import available_cores, build_app, with_replica_threads
from sluicegate.gateway.settings import ServeSettings

APP_NAME = "sluicegate"


def worker_env() -> dict[str, Any]:
    """Ray's runtime_env for the workers: in a source checkout, the checkout on PYTHONPATH, so the
    replicas import this very code (an installed sluicegate is found without help)."""
    import sluicegate

    root = Path(sluicegate.__file__).resolve().parent.parent
    if not (root / "engine" / "__init__.py").is_file():
        return {}
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return {"env_vars": {"PYTHONPATH": path}}


def start_ray(settings: ServeSettings) -> None:
    """A local Ray sized for the replicas (logical CPUs: one per torch thread, the ingress takes
    none), with a bounded object store; or the cluster at --ray-address."""
    import ray

    cluster = settings.cluster
    kwargs: dict[str, Any] = {"runtime_env": worker_env(), "include_dashboard": False,
                              "namespace": APP_NAME, "log_to_driver": True}
    if cluster.ray_address is None:
        threads = with_replica_threads(settings).engine.num_threads or 1
        kwargs["num_cpus"] = max(available_cores(), (settings.replicas or 1) * threads)
        kwargs["object_store_memory"] = cluster.ray_object_store_mb * 2**20
    else:
        kwargs["address"] = cluster.ray_address
    ray.init(**kwargs)


def run_application(settings: ServeSettings, router: str = "prefix") -> None:
    """Start Serve's HTTP proxy on --host/--port and deploy the application (returns once it is up)."""
    from ray import serve

    http: dict[str, Any] = {"host": settings.host, "port": settings.port}
    if settings.ssl_certfile:
        http |= {"ssl_keyfile": settings.ssl_keyfile, "ssl_certfile": settings.ssl_certfile}
    serve.start(http_options=http)
    serve.run(build_app(settings, router), name=APP_NAME, route_prefix="/", blocking=False)


def serve_replicas(settings: ServeSettings) -> int:
    import ray
    from ray import serve

    threads = with_replica_threads(settings).engine.num_threads
    print(f"sluicegate: starting {settings.replicas} replicas on Ray Serve, {threads} torch thread(s) each",
          file=sys.stderr, flush=True)
    start_ray(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        run_application(settings)
        scheme = "https" if settings.ssl_certfile else "http"
        print(f"sluicegate: ready: {settings.replicas} replicas at {scheme}://{settings.host}:{settings.port}/v1",
              file=sys.stderr, flush=True)
        stop.wait()
        print("sluicegate: shutting down the replicas", file=sys.stderr, flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
