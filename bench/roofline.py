"""Share of the machine's bf16 roofline that the served model reaches, from a serving_bench run.

    python bench/roofline.py [--serving bench/out/serving.json] [--threads 2] [--results]

Measured here, not taken from a spec sheet: the bf16 matmul peak (a large square torch matmul) and
the memory bandwidth (a large tensor copy), both on --threads threads. Then, from the serving run
with prompts already cached:
- batch 1 is bound by bandwidth: every decode step reads all weights once, so the step rate
  (1 / ITL p50) x weight bytes / bandwidth is the share reached;
- batch 32 is bound by compute: output tok/s x 2 x parameters (FLOPs per token, attention left out:
  a few % at these lengths) / peak FLOP/s.
sluicegate's batch-1 share is against its bf16 weights (2 bytes a parameter: the bf16 roofline),
although its steps of a few rows read the GGUF's 4-bit layers as stored, so it can pass 1;
llama-server reads the GGUF's quantized blocks, so its bandwidth share uses the file's tensor bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import OUT_DIR, default_gguf, markdown_table, save  # noqa: E402


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: allocation, kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bf16_flops(size: int = 2048) -> float:
    import torch

    a = torch.randn(size, size, dtype=torch.bfloat16)  # a, b: [size, size]
    b = torch.randn(size, size, dtype=torch.bfloat16)
    return 2 * size**3 / best_seconds(lambda: a @ b, repeats=5)


def memory_bandwidth(megabytes: int = 512) -> float:
    """Bytes moved per second by a copy (read + write) far larger than the caches."""
    import torch

    src = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / best_seconds(lambda: dst.copy_(src), repeats=5)


def gguf_weights(path: Path) -> tuple[int, int]:
    """(parameters, bytes as stored) of the GGUF file's tensors."""
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    return sum(int(t.n_elements) for t in tensors), sum(int(t.n_bytes) for t in tensors)


def shares(rows: list[dict[str, Any]], params: int, file_bytes: int, flops: float, bandwidth: float) -> list[list[Any]]:
    out = []
    for r in rows:
        if r.get("prompts", "cached") != "cached" or r["concurrency"] not in (1, 32):
            continue
        weight_bytes = 2 * params if r["server"] == "sluicegate" else file_bytes
        if r["concurrency"] == 1:
            steps_per_s = 1000 / r["itl_p50_ms"]
            out.append([r["server"], 1, "bandwidth", f"{steps_per_s:.1f} steps/s x {weight_bytes / 1e6:.0f} MB",
                        steps_per_s * weight_bytes / bandwidth])
        else:
            achieved = r["tok_per_s"] * 2 * params
            out.append([r["server"], 32, "bf16 compute", f"{achieved / 1e9:.1f} GFLOP/s", achieved / flops])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serving", type=Path, default=OUT_DIR / "serving.json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", action="store_true", help="also copy table and JSON into bench/results/")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    flops, bandwidth = peak_bf16_flops(), memory_bandwidth()
    params, file_bytes = gguf_weights(default_gguf())
    rows = json.loads(args.serving.read_text())["rows"]
    table = markdown_table(["server", "batch", "bound", "achieved", "share of roofline"],
                           shares(rows, params, file_bytes, flops, bandwidth))
    text = (f"Machine ({args.threads} threads, measured): bf16 matmul peak {flops / 1e9:.0f} GFLOP/s, "
            f"copy bandwidth {bandwidth / 1e9:.1f} GB/s. Model: {params / 1e6:.0f} M parameters, "
            f"{2 * params / 1e6:.0f} MB in bf16, {file_bytes / 1e6:.0f} MB in the GGUF.\n\n{table}")
    print(text)
    save("roofline", {"flops": flops, "bandwidth": bandwidth, "params": params, "gguf_bytes": file_bytes,
                      "serving": str(args.serving), "table": table}, text, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
