"""Fuzzing the HTTP API from its own OpenAPI document (schemathesis): positive and negative cases
for every operation; no 500, no hang (every call has a timeout), nothing left in the engine."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

pytestmark = pytest.mark.slow

schemathesis = pytest.importorskip("schemathesis")


def _bounded(body: Any) -> Any:
    """Valid requests can only be slow here (a CPU model): cap output length, n and min_tokens."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    for key in ("max_tokens", "max_completion_tokens"):
        # any size: the server clamps a huge max_tokens to the context, and at temperature 1 a run
        # of thousands of tokens outlasted the client's 60 s
        value = out.get(key)  # a float with an integer value (1e20) is accepted as an int too
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 2:
            out[key] = 2
    if isinstance(out.get("n"), int) and 2 < out["n"] <= 16:
        out["n"] = 2
    if isinstance(out.get("min_tokens"), int) and out["min_tokens"] > 1:
        out["min_tokens"] = 1
    if ("messages" in out or "prompt" in out) and out.get("max_tokens") is None:
        out["max_tokens"] = 2  # absent or null both mean "up to the context"
    return out


def _fuzz(op: Any, mode: Any, url: str, model: str, failures: list[str]) -> int:
    """Up to 25 cases of one operation in one generation mode; returns how many were sent."""
    from schemathesis import GenerationMode

    calls = 0

    @settings(max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        nonlocal calls
        case.body = _bounded(case.body)
        if isinstance(case.body, dict) and "model" in case.body and mode is GenerationMode.POSITIVE:
            case.body["model"] = model  # reach past the 404 for the model name
        calls += 1
        response = case.call(base_url=url, timeout=60)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.path} {response.status_code}: {response.text[:300]} "
                            f"body={str(case.body)[:300]}")

    try:
        run()
    except Unsatisfiable:  # e.g. no negative case for an operation without inputs
        pass
    return calls


def test_openapi_fuzz_no_server_errors(servers: Any) -> None:
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{servers.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/chat/completions" for op in operations)
    failures: list[str] = []
    calls = sum(_fuzz(op, mode, servers.url, servers.model, failures)
                for op in operations for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
    assert calls > 100, calls
    assert not failures, "\n".join(failures[:10])
    servers.wait_idle()
