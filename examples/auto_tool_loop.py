"""An agent loop with tool_choice="auto": the model decides, turn by turn, to call a tool or answer.

    python examples/auto_tool_loop.py --base-url http://127.0.0.1:8000/v1 [--first-tool-choice required]

Each turn sends the whole conversation. While the reply holds tool calls, every call is run and
its result appended as a `tool` message; the first reply without calls is the answer. A cap on
turns keeps a model that never stops calling from looping for ever.

Small models often answer directly under "auto" (the embedded 135M model does for this
question). `--first-tool-choice required` forces the first turn to call, a common agent pattern
when the first step is known; every later turn is "auto".
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

TOOLS = {"convert_length": check_call}


def run_agent(client: OpenAI, model: str, question: str, max_turns: int,
              first_tool_choice: str = "auto") -> dict[str, Any]:
    messages: list[Any] = [{"role": "user", "content": question}]
    calls: list[dict[str, Any]] = []
    for turn in range(max_turns):
        reply = client.chat.completions.create(model=model, messages=messages, tools=[openai_tool()],
                                               tool_choice=first_tool_choice if turn == 0 else "auto",
                                               parallel_tool_calls=False, temperature=0, max_tokens=96)
        message = reply.choices[0].message
        if not message.tool_calls:
            return {"calls": calls, "answer": message.content or "", "turns": turn + 1}
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            arguments = json.loads(call.function.arguments)
            result = TOOLS[call.function.name](arguments)
            print(f"turn {turn + 1}: {call.function.name}({arguments}) -> {result}")
            calls.append({"arguments": arguments, "result": result})
            messages.append({"role": "tool", "tool_call_id": call.id, "content": json.dumps({"result": result})})
    return {"calls": calls, "answer": "", "turns": max_turns}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default="unused")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--first-tool-choice", choices=["auto", "required"], default="auto")
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = client.models.list().data[0].id
    outcome = run_agent(client, model, QUESTION, args.max_turns, args.first_tool_choice)
    print(f"answer after {outcome['turns']} turn(s): {outcome['answer']}")
    print("RESULT " + json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())
