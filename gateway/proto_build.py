"""Generate Python code from proto/ with grpcio-tools (run by `make setup`; never edit the output)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def build() -> int:
    protos = sorted(PROTO_DIR.rglob("*.proto"))
    if not protos:
        return 0
    from grpc_tools import protoc  # imported here: no work at import time

    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={PROTO_DIR}",
            f"--grpc_python_out={PROTO_DIR}", f"--pyi_out={PROTO_DIR}", *map(str, protos)]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(build())
