"""A hand-written stdio "MCP server" that speaks the handshake correctly and then answers
tools/call with garbage: a non-JSON line for `noise`, a result of the wrong shape for `bad_shape`.
No SDK: the point is a peer the SDK would never produce."""

from __future__ import annotations

import json
import sys

TOOLS = [
    {"name": "noise", "description": "Answers with a line that is not JSON.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "bad_shape", "description": "Answers with a result whose content is not a list.",
     "inputSchema": {"type": "object", "properties": {}}},
]


def send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def answer(request: dict) -> None:
    method, rid = request.get("method"), request.get("id")
    if rid is None:  # a notification: nothing to answer
        return
    if method == "initialize":
        version = request.get("params", {}).get("protocolVersion", "2025-06-18")
        send({"jsonrpc": "2.0", "id": rid, "result": {
            "protocolVersion": version, "capabilities": {"tools": {}},
            "serverInfo": {"name": "garbage", "version": "0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
    elif method == "tools/call" and request["params"]["name"] == "noise":
        sys.stdout.write("this is not JSON-RPC at all\n")
        sys.stdout.flush()
    elif method == "tools/call":
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": "not a list", "isError": "maybe"}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"Method not found: {method}"}})


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            answer(json.loads(line))


if __name__ == "__main__":
    main()
