"""deploy/k8s: the manifests parse, their container args are flags `sluicegate` accepts, the probes
name the server's readiness and liveness routes, and the grace period covers the drain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sluicegate.gateway.cli import parse_args, settings_from_args

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def _docs(name: str) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((K8S / name).read_text())}


def test_deployment_args_probes_and_grace_period() -> None:
    deployment = _docs("sluicegate.yaml")["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    settings = settings_from_args(parse_args(container["args"]))
    assert pod["terminationGracePeriodSeconds"] > settings.graceful_shutdown_s
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_inference_pool_selects_the_deployment_pods() -> None:
    deployment = _docs("sluicegate.yaml")["Deployment"]
    pool = _docs("inferencepool.yaml")["InferencePool"]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    ports = [p["containerPort"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert [p["number"] for p in pool["spec"]["targetPorts"]] == ports
