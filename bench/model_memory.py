"""What a quantized GGUF costs once loaded: the file, its dequantized cache, the weights in memory.

    python bench/model_memory.py [MODEL] [--dtype bfloat16]

The engine runs on dequantized weights (a GGUF is converted once to float32 safetensors in the
cache, then cast to --dtype), so a Q4 file's memory is that of the unquantized model. Each dtype
is loaded in a fresh process; its peak RSS includes torch and transformers themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MIB = 2**20
_CHILD = """
import json, resource, sys, torch
from sluicegate.engine.models.loader import load_model
loaded = load_model(sys.argv[1] if sys.argv[1] != "-" else None, getattr(torch, sys.argv[2]),
                    torch.device("cpu"), progress=None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
print(json.dumps({"weights": sum(t.nbytes for t in loaded.weights.values()),
                  "params": sum(t.numel() for t in loaded.weights.values()),
                  "peak_rss": peak * 1024, "name": loaded.name}))
"""


def measure(model: str | None, dtype: str) -> dict:
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _CHILD, model or "-", dtype], capture_output=True,
                         text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=None, help="a .gguf file (default: the embedded model)")
    args = parser.parse_args()
    from sluicegate.engine.models.convert_cache import cache_dir_for
    from sluicegate.engine.models.default_model import resolve_model_path

    path = resolve_model_path(args.model)
    measure(args.model, "float32")  # converts on first use, so the cache below exists
    cached = cache_dir_for(path) / "hf" / "model.safetensors"
    rows = {dtype: measure(args.model, dtype) for dtype in ("bfloat16", "float32")}
    name = rows["bfloat16"]["name"]
    print(f"{name}: {rows['bfloat16']['params'] / 1e6:.1f} M parameters\n")
    print("| what | MiB |\n|---|---|")
    print(f"| GGUF file on disk ({path.name}) | {path.stat().st_size / MIB:,.0f} |")
    print(f"| dequantized cache (float32 safetensors, once) | {cached.stat().st_size / MIB:,.0f} |")
    for dtype, row in rows.items():
        print(f"| weights in memory, {dtype} | {row['weights'] / MIB:,.0f} |")
        print(f"| peak RSS of a process that imports torch and loads it, {dtype} | "
              f"{row['peak_rss'] / MIB:,.0f} |")


if __name__ == "__main__":
    main()
