"""A LangChain tool agent on sluicegate: ChatSluicegate + bind_tools + a tool-executing loop.

    python examples/langchain_agent.py --base-url http://127.0.0.1:8000/v1

The loop is the classic one (model -> tool calls -> ToolMessages -> model ...) up to --max-turns:
the first turn is forced to call the tool by name (the grammar keeps the call valid), later turns
use --then (default "none": answer in words; "auto" lets the model call again, which the 135M
default model does unreliably). Prints the last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from pydantic import BaseModel, Field

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import DESCRIPTION, QUESTION, Unit, check_call  # noqa: E402

from sluicegate.integrations.langchain import ChatSluicegate  # noqa: E402


class ConvertArgs(BaseModel):
    value: float = Field(description="the quantity to convert")
    from_unit: Unit  # a Literal: an enum in the schema, so the grammar allows known units only
    to_unit: Unit


@tool("convert_length", args_schema=ConvertArgs, description=DESCRIPTION)
def convert_length(value: float, from_unit: Unit, to_unit: Unit) -> float:
    return check_call({"value": value, "from_unit": from_unit, "to_unit": to_unit})


def run_agent(llm: ChatSluicegate, question: str, max_turns: int, then: str) -> tuple[list[dict], str]:
    messages: list[BaseMessage] = [HumanMessage(question)]
    calls: list[dict] = []
    for turn in range(max_turns):
        choice = "convert_length" if turn == 0 else (then if turn < max_turns - 1 else "none")
        reply = llm.bind_tools([convert_length], tool_choice=choice, parallel_tool_calls=False).invoke(messages)
        assert isinstance(reply, AIMessage)
        messages.append(reply)
        if not reply.tool_calls:
            return calls, str(reply.content)
        for call in reply.tool_calls:
            result = convert_length.invoke(call["args"])
            print(f"tool call {call['name']}({call['args']}) -> {result}")
            calls.append({"arguments": call["args"], "result": result})
            messages.append(ToolMessage(json.dumps({"result": result}), tool_call_id=call["id"]))
    raise AssertionError("the agent did not finish")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-turns", type=int, default=3)
    parser.add_argument("--then", choices=["none", "auto"], default="none", help="tool_choice after turn 1")
    args = parser.parse_args()
    llm = ChatSluicegate(base_url=args.base_url, api_key=args.api_key, temperature=0, max_tokens=args.max_tokens)
    calls, answer = run_agent(llm, QUESTION, args.max_turns, args.then)
    print(f"answer: {answer}")
    assert calls and answer.strip(), "the loop must call the tool and then answer"
    print("RESULT " + json.dumps({"calls": calls, "answer": answer}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
