"""Per-call time of a bf16 linear on CPU, plain F.linear vs a weight prepacked once for oneDNN, and
weight-only int8 (per output channel) and int4 (groups of 32) kernels, at the default model's
layer shapes and a range of token counts (where each wins, where it loses).

    python bench/linear_pack.py [--threads 2] [--iters 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

SHAPES = {"qkv": (960, 576), "o_proj": (576, 576), "gate_up": (3072, 576), "down": (576, 1536),
          "lm_head": (49152, 576)}


def per_call_us(fn: Callable[[], object], iters: int) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--tokens", default="1,4,8,16,32,64,256,512")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bf16, {args.threads} thread(s); us per call (ratio = plain / packed)")
    print("| shape | tokens | plain us | packed us | ratio | int8 us | int4 us |\n| --- | --- | --- | --- | --- | --- | --- |")
    with torch.inference_mode():
        for name, (n, k) in SHAPES.items():
            w = torch.randn(n, k, dtype=torch.bfloat16)
            packed = torch.ops.mkldnn._reorder_linear_weight(w, 1)
            scales = (w.float().abs().amax(1) / 127).clamp(min=1e-8)
            w8 = (w.float() / scales[:, None]).round().clamp(-128, 127).to(torch.int8)
            s8 = scales.to(torch.bfloat16)
            w4 = torch.ops.aten._convert_weight_to_int4pack_for_cpu(torch.randint(0, 16, (n, k), dtype=torch.int32), 1)
            sz4 = torch.randn(k // 32, n, 2, dtype=torch.bfloat16)
            for t in (int(s) for s in args.tokens.split(",")):
                x = torch.randn(t, k, dtype=torch.bfloat16)
                iters = max(10, args.iters // max(1, t // 16)) if name != "lm_head" else max(5, args.iters // 10)
                plain = per_call_us(lambda: F.linear(x, w), iters)  # noqa: B023
                pk = per_call_us(lambda: torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], ""),  # noqa: B023
                                 iters)
                i8 = per_call_us(lambda: torch.ops.aten._weight_int8pack_mm(x, w8, s8), iters)  # noqa: B023
                i4 = per_call_us(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, w4, 32, sz4), iters)  # noqa: B023
                print(f"| {name} {n}x{k} | {t} | {plain:.1f} | {pk:.1f} | {plain / pk:.2f}x | {i8:.1f} | {i4:.1f} |")


if __name__ == "__main__":
    main()
