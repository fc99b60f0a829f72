"""The generated gRPC code matches proto/ (regenerated into a temp dir and compared with what is
imported), and the proto documents every rpc, message field and enum value with a `///` comment."""

from __future__ import annotations

import re
from pathlib import Path

from sluicegate.gateway import proto_build


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    from sluicegate.proto.sluicegate.v1 import inference_pb2, inference_pb2_grpc

    assert proto_build.build(tmp_path) == 0
    for proto in proto_build.proto_files():
        fresh = proto_build.generated_files(proto, tmp_path)
        used = proto_build.generated_files(proto)
        for new, old in zip(fresh, used, strict=True):
            assert new.read_text() == old.read_text(), f"{old} is stale: run `python -m sluicegate.gateway.proto_build`"
    imported = {Path(inference_pb2.__file__).resolve(), Path(inference_pb2_grpc.__file__).resolve()}
    assert imported <= {p.resolve() for p in used}


def test_generated_imports_are_package_paths() -> None:
    # `from sluicegate.proto.sluicegate.v1 import ...`, never a bare `import inference_pb2` that only works
    # with the output folder on sys.path
    grpc_module = (proto_build.ROOT / "proto/sluicegate/v1/inference_pb2_grpc.py").read_text()
    assert "from sluicegate.proto.sluicegate.v1 import inference_pb2" in grpc_module


_DECL = re.compile(r"^\s*(rpc |(optional |repeated )?[\w.<>, ]+ \w+ = \d+;|[A-Z_]+ = \d+;|oneof |enum |message |service )")


def test_every_declaration_is_documented() -> None:
    for proto in proto_build.proto_files():
        lines = proto.read_text().splitlines()
        for i, line in enumerate(lines):
            if _DECL.match(line) and not line.strip().startswith("//"):
                assert lines[i - 1].strip().startswith("///"), f"{proto.name}:{i + 1} undocumented: {line.strip()}"
