"""sluicegate.v1: inference.proto and its generated modules (inference_pb2, inference_pb2_grpc).

A wheel ships the generated modules (setup.py generates them at build time). In a source checkout
they are not committed: importing this package there generates them when they are missing or
older than the .proto (gateway/proto_build.py), so `import` works on a fresh clone. An installed
tree is never written to.
"""

from sluicegate.gateway.proto_build import ensure_built as _ensure_built
from sluicegate.gateway.proto_build import is_checkout as _is_checkout

if _is_checkout():
    _ensure_built()
