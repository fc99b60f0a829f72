"""Generate Python code from proto/ with grpcio-tools (at wheel build time by setup.py, in a checkout
by `make setup`; never edit the output).

The protos are compiled with the repository root as the include path, and the generated modules'
imports of each other are then written under the installed namespace
(`sluicegate.proto.sluicegate.v1.inference_pb2`), the path that works for a wheel, an editable
install and a source checkout alike. In a checkout, `ensure_built()` (called when
`sluicegate.proto.sluicegate.v1` is imported) regenerates missing or stale code, so a fresh clone works
without `make setup`; an installed tree already holds the code and is never written to. Output is written to a temporary folder first and moved into place file by
file, so two processes generating at once never see half-written modules.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
# protoc writes `from proto.sluicegate.v1 import ...` (the path from the include root); the
# package is installed as `sluicegate.proto`.
_PROTOC_IMPORT = "from proto."
_PACKAGE_IMPORT = "from sluicegate.proto."


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generated_files(proto: Path, out_root: Path = ROOT) -> list[Path]:
    """The modules protoc writes for `proto` (under out_root, mirroring its path from ROOT)."""
    stem = out_root / proto.relative_to(ROOT).with_suffix("")
    return [stem.with_name(stem.name + suffix) for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")]


def build(out_root: Path | None = None) -> int:
    """Generate code for every .proto under proto/ into out_root (default: the repository)."""
    protos = proto_files()
    if not protos:
        return 0
    import grpc_tools
    from grpc_tools import protoc  # imported here: no work at import time

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    target = out_root or ROOT
    with tempfile.TemporaryDirectory(dir=target if out_root is None else None) as tmp:
        args = ["protoc", f"-I{ROOT}", f"-I{include}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
                f"--pyi_out={tmp}", *map(str, protos)]
        code = int(protoc.main(args))
        if code != 0:
            return code
        for proto in protos:
            for made, final in zip(generated_files(proto, Path(tmp)), generated_files(proto, target), strict=True):
                made.write_text(made.read_text().replace(_PROTOC_IMPORT, _PACKAGE_IMPORT))
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(made, final)
    return 0


def is_checkout() -> bool:
    """True when running from a source checkout (not from an installed wheel)."""
    return (ROOT / "setup.py").is_file() and PROTO_DIR.is_dir()


def is_stale() -> bool:
    """True when some generated module is missing or older than its .proto."""
    for proto in proto_files():
        mtime = proto.stat().st_mtime
        for out in generated_files(proto):
            if not out.exists() or out.stat().st_mtime < mtime:
                return True
    return False


def ensure_built() -> None:
    """Generate the code if it is missing or stale (a fresh clone, an edited .proto)."""
    if is_stale() and build() != 0:
        raise RuntimeError("generating gRPC code from proto/ failed (see protoc's message above)")


if __name__ == "__main__":
    sys.exit(build())
