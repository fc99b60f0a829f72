"""The CPU kernels of csrc/ (cpu_ops.cpp: rms_norm, add_rms_norm, silu_mul, rope_store_kv;
paged_decode.cpp: paged_decode_attention; int8_linear.cpp: int8_linear; causal_softmax.cpp:
causal_softmax_): built once per machine with the system's C++ compiler, cached, and loaded as
torch ops (torch.ops.sluicegate.*).

Built against the installed torch's headers, for this CPU's instruction set (-march=native), into
<cache>/kernels/<key>/ where the key covers the sources, torch's version, the compiler and the CPU
flags, so a changed one builds again (~20 s on 2 cores) and an unchanged one loads in milliseconds.
`make setup` builds them ahead (`python -m sluicegate.engine.kernels.cpu_ops`); an engine that
starts without them builds them then. Where they cannot be built (no compiler, a failed build, not
Linux/x86 or ARM), load() says why once and returns False, and the model runs torch's ops instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import torch

from sluicegate.engine.models.convert_cache import cache_root

log = logging.getLogger("sluicegate.engine")

CSRC = Path(__file__).with_name("csrc")
SOURCES = (CSRC / "cpu_ops.cpp", CSRC / "paged_decode.cpp", CSRC / "int8_linear.cpp", CSRC / "causal_softmax.cpp")  # + cpu_common.h
LIBRARY_NAME = "sluicegate_cpu_ops.so"
FAILED_NAME = "build-failed.txt"


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")


def _cpu_flags() -> str:
    """This CPU's feature flags (what -march=native compiles for), or the machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.machine()


def _command(compiler: str, output: Path) -> list[str]:
    torch_dir = Path(torch.__file__).resolve().parent
    return [
        compiler, "-O3", "-march=native", "-fopenmp", "-std=c++20", "-shared", "-fPIC", "-w",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
        f"-I{torch_dir / 'include'}", f"-I{torch_dir / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        *(str(source) for source in SOURCES), "-o", str(output),
        f"-L{torch_dir / 'lib'}", "-lc10", "-ltorch_cpu", f"-Wl,-rpath,{torch_dir / 'lib'}",
    ]


def _library_path(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256()
    sources = b"".join(path.read_bytes() for path in sorted(CSRC.iterdir()) if path.suffix in (".cpp", ".h"))
    # the flags, with the sources' folder left out: another checkout of the same sources shares the build
    flags = " ".join(_command("cxx", Path("out"))).replace(str(CSRC), "csrc")
    for part in (sources, torch.__version__.encode(), version.encode(), _cpu_flags().encode(), flags.encode()):
        key.update(part)
        key.update(b"\0")
    return cache_root() / "kernels" / key.hexdigest()[:16] / LIBRARY_NAME


def build() -> Path:
    """The compiled library's path, compiling it first when it is not in the cache; raises
    RuntimeError with the compiler's message when it cannot be built."""
    if not sys.platform.startswith("linux") or platform.machine() not in ("x86_64", "aarch64"):
        raise RuntimeError(f"the CPU kernels are built for Linux on x86_64 or aarch64, not {sys.platform} "
                           f"on {platform.machine()}")
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    path = _library_path(compiler)
    if path.exists():
        return path
    failed = path.with_name(FAILED_NAME)
    if failed.exists():  # a build of this very source, compiler and CPU already failed: do not retry each start
        raise RuntimeError(failed.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    print("[sluicegate] building the CPU kernels for this machine (once, ~20 s)", file=sys.stderr, flush=True)
    # written beside its final name and renamed: a concurrent start never loads half a file
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        done = subprocess.run(_command(compiler, Path(tmp)), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            message = f"compiling the kernels in {CSRC} failed (delete {failed} to retry):\n{(done.stderr or done.stdout)[-2000:]}"
            failed.write_text(message)
            raise RuntimeError(message)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


@cache
def load() -> bool:
    """True once torch.ops.sluicegate.* are registered; False (logged once, with the reason) when
    the kernels cannot be built or loaded here."""
    try:
        torch.ops.load_library(str(build()))
    except (RuntimeError, OSError) as e:
        log.warning("CPU kernels unavailable, using torch's ops instead: %s", e)
        return False
    return True


def main() -> int:
    """Build (or find) the kernels ahead of the first start: `python -m sluicegate.engine.kernels.cpu_ops`."""
    try:
        path = build()
        torch.ops.load_library(str(path))
    except (RuntimeError, OSError) as e:
        print(f"[sluicegate] CPU kernels unavailable, the engine will use torch's ops: {e}", file=sys.stderr)
        return 0  # not fatal: set-up goes on without them
    print(f"[sluicegate] CPU kernels ready: {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
