"""Each app's metrics live in a private registry: two apps in one process do not share counters."""

from __future__ import annotations

from sluicegate.gateway.metrics import Metrics


def test_private_registries() -> None:
    a, b = Metrics(), Metrics()
    a.observe_request("/v1/chat/completions", 200)
    a.observe_usage(prompt_tokens=10, cached_tokens=4, output_tokens=3)
    a.ttft.observe(0.05)
    text_a, text_b = a.render().decode(), b.render().decode()
    assert 'sluicegate_requests_total{endpoint="/v1/chat/completions",status="200"} 1.0' in text_a
    assert "sluicegate_cached_prompt_tokens_total 4.0" in text_a
    assert "sluicegate_requests_total{" not in text_b
    a.refresh_engine(None, ready=False)
    assert "sluicegate_ready 0.0" in a.render().decode()
