"""`serve run sluicegate.gateway.cluster.app:build key=value ...` reads the same settings as
`sluicegate serve`'s flags, and replicas share the machine's cores out by default (no Ray needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sluicegate.gateway.cluster import app
from sluicegate.gateway.settings import ServeSettings


def test_builder_pairs_are_serve_flags() -> None:
    settings = app.settings_from_pairs({"replicas": 3, "num-threads": "2", "route_imbalance": "7",
                                        "enable_prefix_caching": "false", "model": "x.gguf"})
    assert settings.replicas == 3 and settings.engine.num_threads == 2
    assert settings.cluster.route_imbalance == 7
    assert settings.engine.cache.enable_prefix_caching is False
    assert settings.engine.model.model == "x.gguf"
    assert app.settings_from_pairs({}).replicas == 1  # `serve run` always means replicas


def test_threads_per_replica_default_to_a_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "available_cores", lambda: 8)
    assert app.replica_threads(replace(ServeSettings(), replicas=3)) == 2
    assert app.replica_threads(replace(ServeSettings(), replicas=16)) == 1
    flagged = replace(ServeSettings(), replicas=3, engine=replace(ServeSettings().engine, num_threads=5))
    assert app.replica_threads(flagged) == 5
