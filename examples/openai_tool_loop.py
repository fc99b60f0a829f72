"""A tool loop with the plain `openai` client against sluicegate's OpenAI-compatible API.

    python examples/openai_tool_loop.py --base-url http://127.0.0.1:8000/v1

Turn 1 forces a call (tool_choice="required"), the tool runs, turn 2 answers in words with the
result in context (tool_choice="none"). Prints the last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import QUESTION, check_call, openai_tool  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0].id
    messages: list[dict] = [{"role": "user", "content": QUESTION}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[openai_tool()],
                                           tool_choice="required", parallel_tool_calls=False, temperature=0,
                                           max_tokens=args.max_tokens)
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and message.tool_calls, first
    messages.append(message.model_dump(exclude_none=True))
    results = []
    for call in message.tool_calls:
        call_args = json.loads(call.function.arguments)
        result = check_call(call_args)
        print(f"tool call {call.function.name}({call_args}) -> {result}")
        results.append({"arguments": call_args, "result": result})
        messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"result": result})})
    final = client.chat.completions.create(model=model, messages=messages, tools=[openai_tool()],
                                           tool_choice="none", temperature=0, max_tokens=args.max_tokens)
    answer = final.choices[0].message.content or ""
    print(f"answer: {answer}")
    assert answer.strip(), "empty final answer"
    usage = final.usage
    cached = usage.prompt_tokens_details.cached_tokens if usage and usage.prompt_tokens_details else 0
    print("RESULT " + json.dumps({"calls": results, "answer": answer, "cached_tokens": cached}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
