"""sluicegate.v1: inference.proto and its generated modules (inference_pb2, inference_pb2_grpc).

The generated modules are not committed; importing this package generates them when they are
missing or older than the .proto (gateway/proto_build.py), so `import` works on a fresh clone.
"""

from sluicegate.gateway.proto_build import ensure_built as _ensure_built

_ensure_built()
