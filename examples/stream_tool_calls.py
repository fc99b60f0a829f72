"""Streamed tool calls, put back together from their deltas with the plain `openai` client.

    python examples/stream_tool_calls.py --base-url http://127.0.0.1:8000/v1

A streamed call arrives in pieces: the first delta of each call carries its `index`, `id` and
function name, later deltas append fragments of the arguments string. Collect them by `index`
(parallel calls interleave), and parse the arguments only when the stream ends.
Prints the last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import QUESTION, check_call, openai_tool  # noqa: E402


def accumulate_tool_calls(stream: Any) -> tuple[list[dict[str, Any]], str | None]:
    """Tool calls ({id, name, arguments}) in index order, and the finish reason."""
    calls: dict[int, dict[str, Any]] = {}
    finish_reason = None
    for chunk in stream:
        if not chunk.choices:  # the usage chunk at the end has no choices
            continue
        choice = chunk.choices[0]
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] += delta.function.name
            if delta.function and delta.function.arguments:
                call["arguments"] += delta.function.arguments
        finish_reason = choice.finish_reason or finish_reason
    return [calls[i] for i in sorted(calls)], finish_reason


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0].id
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": QUESTION}], tools=[openai_tool()],
        tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=64, stream=True,
        stream_options={"include_usage": True})
    calls, finish_reason = accumulate_tool_calls(stream)
    assert finish_reason == "tool_calls" and calls, (finish_reason, calls)
    results = []
    for call in calls:
        arguments = json.loads(call["arguments"])  # whole only now; fragments are not JSON
        result = check_call(arguments)
        print(f"tool call {call['id']} {call['name']}({arguments}) -> {result}")
        results.append({"arguments": arguments, "result": result})
    print("RESULT " + json.dumps({"calls": results, "finish_reason": finish_reason}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
