"""sluicegate's gRPC API from Python: list models, a streamed tool call, the tool's result sent back,
and a constrained Generate.

    sluicegate serve --grpc-port 50051 &
    python examples/grpc_client.py --target 127.0.0.1:50051

Uses the code generated from proto/sluicegate/v1/inference.proto (`import proto.sluicegate.v1`
generates it on first use). Prints the last line `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from units import DESCRIPTION, QUESTION, SCHEMA, check_call  # noqa: E402

from sluicegate.proto.sluicegate.v1 import inference_pb2 as pb  # noqa: E402
from sluicegate.proto.sluicegate.v1 import inference_pb2_grpc as pb_grpc  # noqa: E402

TOOL = pb.Tool(name="convert_length", description=DESCRIPTION, parameters=json.dumps(SCHEMA))


def chat(stub: pb_grpc.InferenceStub, request: pb.ChatRequest, metadata: tuple) -> pb.ChatDone:
    """Stream one Chat call, printing deltas as they come; return its final message."""
    for response in stub.Chat(request, metadata=metadata, timeout=120):
        if response.WhichOneof("event") == "delta":
            for fragment in response.delta.tool_calls:
                print(f"  [call {fragment.index}] {fragment.name}{fragment.arguments}", flush=True)
            if response.delta.text:
                print(f"  [text] {response.delta.text}", flush=True)
        else:
            return response.done
    raise RuntimeError("the stream ended without a final message")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", default="127.0.0.1:50051", help="host:port of the gRPC server")
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    metadata = (("authorization", f"Bearer {args.api_key}"),) if args.api_key else ()
    sampling = pb.SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    with grpc.insecure_channel(args.target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        model = stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=30).models[0]
        print(f"model {model.id} (context {model.max_model_len} tokens)")
        messages = [pb.ChatMessage(role="user", content=QUESTION)]
        first = chat(stub, pb.ChatRequest(messages=messages, tools=[TOOL], sampling=sampling,
                                          tool_choice=pb.ToolChoice(function="convert_length"),
                                          parallel_tool_calls=False), metadata)
        assert first.finish_reason == pb.FINISH_REASON_TOOL_CALLS and first.message.tool_calls, first
        messages.append(first.message)
        calls = []
        for call in first.message.tool_calls:
            arguments = json.loads(call.arguments)
            result = check_call(arguments)
            calls.append({"arguments": arguments, "result": result})
            messages.append(pb.ChatMessage(role="tool", tool_call_id=call.id, content=json.dumps({"result": result})))
        final = chat(stub, pb.ChatRequest(messages=messages, tools=[TOOL], sampling=sampling,
                                          tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_NONE)), metadata)
        assert final.message.content.strip(), "empty final answer"
        verdict = "".join(r.text for r in stub.Generate(pb.GenerateRequest(
            text=f"Is 42 kilometers about {calls[0]['result']} {calls[0]['arguments']['to_unit']}s? Answer:",
            sampling=sampling, constraint=pb.Constraint(choice=pb.ChoiceOptions(options=[" yes", " no"]))),
            metadata=metadata, timeout=60))
        assert verdict in (" yes", " no"), verdict
    print(f"answer: {final.message.content}")
    print("RESULT " + json.dumps({"calls": calls, "answer": final.message.content, "verdict": verdict.strip(),
                                  "cached_tokens": final.usage.cached_tokens}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
