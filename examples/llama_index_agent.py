"""A LlamaIndex FunctionAgent on sluicegate (integrations.llama_index.Sluicegate).

    python examples/llama_index_agent.py --base-url http://127.0.0.1:8000/v1

The agent's first step is forced to call the conversion tool (initial_tool_choice); the tool is
`return_direct`, so its result ends the run, as a calculator-style agent should. The server's
grammar makes the call valid. Prints the last line `RESULT {json}`.
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path

from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import DESCRIPTION, QUESTION, Unit, check_call  # noqa: E402

from sluicegate.integrations.llama_index import Sluicegate  # noqa: E402


def convert_length(value: float, from_unit: Unit, to_unit: Unit) -> float:
    """Convert a length from one unit to another."""
    return check_call({"value": value, "from_unit": from_unit, "to_unit": to_unit})


async def run(llm: Sluicegate) -> dict:
    tool = FunctionTool.from_defaults(fn=convert_length, name="convert_length", description=DESCRIPTION,
                                      return_direct=True)
    agent = FunctionAgent(tools=[tool], llm=llm, initial_tool_choice="convert_length", allow_parallel_tool_calls=False,
                          system_prompt="You convert units with the convert_length tool.")
    handler = agent.run(user_msg=QUESTION)
    calls = []
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            print(f"tool call {event.tool_name}({event.tool_kwargs}) -> {event.tool_output.content}")
            calls.append({"arguments": event.tool_kwargs, "result": event.tool_output.raw_output,
                          "error": event.tool_output.is_error})
    response = await handler
    return {"calls": calls, "answer": str(response)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    llm = Sluicegate(base_url=args.base_url, api_key=args.api_key, temperature=0.0, max_tokens=args.max_tokens)
    result = asyncio.run(run(llm))
    assert result["calls"] and not any(c["error"] for c in result["calls"]), result
    assert isinstance(result["calls"][0]["result"], float)
    print(f"answer: {result['answer']}")
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
