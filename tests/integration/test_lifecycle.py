"""Client disconnects abort engine requests (no request or KV block left behind), /metrics, and
`sluicegate serve` as a process: 503 while loading, the ready line, SIGTERM drains in-flight streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.slow

LONG = {"messages": [{"role": "user", "content": "Tell me a very long story."}], "max_tokens": 2000,
        "ignore_eos": True, "temperature": 0.8}


def _running(live: Any) -> int:
    stats = live.engine.stats()
    return int(stats.num_running + stats.num_waiting)


def test_disconnect_mid_stream_aborts(live: Any, model_name: str, idle_engine: Any) -> None:
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{live.url}/v1/chat/completions",
                         json={"model": model_name, "stream": True, **LONG}) as r:
            assert r.status_code == 200
            lines: list[str] = []
            stream = r.iter_lines()
            for line in stream:
                if line.startswith("data: "):
                    lines.append(line)
                if len(lines) >= 4:
                    break
            if _running(live) == 0:  # seen twice in ~20 runs: say how the request ended
                rest = [line[-200:] for line, _ in zip(stream, range(8), strict=False) if line]
                pytest.fail(f"engine request ended while the stream was open: {live.engine.stats()}; "
                            f"first lines {[x[-120:] for x in lines]}; then {rest}")
    # the response is closed: the engine request must be aborted well before 2000 tokens
    deadline = time.monotonic() + 10
    while _running(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(live) == 0
    live.engine.check_integrity()


def test_disconnect_non_streaming_aborts(live: Any, model_name: str, idle_engine: Any) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live.url}/v1/chat/completions", json={"model": model_name, **LONG}, timeout=1.5)
    deadline = time.monotonic() + 10
    while _running(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(live) == 0
    live.engine.check_integrity()


def test_metrics(live: Any, client: Any, model_name: str) -> None:
    client.chat.completions.create(model=model_name, messages=[{"role": "user", "content": "hi"}], max_tokens=3)
    text = httpx.get(f"{live.url}/metrics").text
    assert 'sluicegate_requests_total{endpoint="/v1/chat/completions",status="200"}' in text
    for name in ("sluicegate_time_to_first_token_seconds_count", "sluicegate_inter_token_latency_seconds_bucket",
                 "sluicegate_prompt_tokens_total", "sluicegate_generation_tokens_total",
                 "sluicegate_num_requests_waiting", "sluicegate_num_requests_running",
                 "sluicegate_kv_cache_usage_ratio", "sluicegate_prefix_cache_hit_rate",
                 "sluicegate_grammar_compile_seconds_count", "sluicegate_ready 1.0"):
        assert name in text, name


def test_inference_gateway_metric_names(live: Any, idle_engine: Any) -> None:
    """The gauges Kubernetes' Gateway API Inference Extension reads from vLLM pods, parsed as a
    Prometheus scraper parses them, with the engine's values."""
    from prometheus_client.parser import text_string_to_metric_families

    samples = {s.name: s for family in text_string_to_metric_families(httpx.get(f"{live.url}/metrics").text)
               for s in family.samples}
    stats = live.engine.stats()
    assert samples["vllm:num_requests_waiting"].value == stats.num_waiting == 0
    assert samples["vllm:num_requests_running"].value == stats.num_running == 0
    assert samples["vllm:kv_cache_usage_perc"].value == stats.kv_usage
    config = samples["vllm:cache_config_info"]
    assert config.labels == {"block_size": str(stats.kv_block_size), "num_gpu_blocks": str(stats.kv_num_blocks)}
    assert config.value == 1.0


def test_serve_process_loading_ready_and_sigterm_drain(tmp_path: Any) -> None:
    """The real CLI: 503 while loading, one 'ready' line, SIGTERM lets an in-flight stream finish."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "sluicegate.gateway.cli", "serve", "--port", str(port),
                             "--kv-cache-memory-gb", "0.1", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        saw_503 = False
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                code = httpx.get(f"{url}/ready", timeout=2).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            if code == 200:
                break
            saw_503 = saw_503 or code == 503
            time.sleep(0.05)
        assert saw_503, "the port should answer 503 while the model loads"
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Count to fifty."}],
                "max_tokens": 40, "ignore_eos": True}
        chunks = 0
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("data: ") and line != "data: [DONE]":
                    chunks += 1
                    if chunks == 3:
                        proc.send_signal(signal.SIGTERM)
                        time.sleep(0.3)
                        with pytest.raises(httpx.TransportError):  # no new connections while draining
                            httpx.get(f"{url}/ready", timeout=2)
                    last = json.loads(line[6:])
        assert last["choices"][0]["finish_reason"] == "length"  # the in-flight stream ran to its end
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained for
    finally:
        if proc.poll() is None:
            proc.kill()
        log.seek(0)
        output = log.read()
    assert output.count("ready: serving") == 1, output
    assert "draining" in output
