"""Per-call times of the CPU kernels against the torch ops they replace (engine/kernels/csrc/).

    python bench/cpu_kernel_ops.py [--threads 2] [--rounds 3]

1. Paged decode attention per layer (9 query / 3 KV heads, head size 64, blocks scattered over the
   cache): torch's path (SDPA on the cache view for one sequence, gather + batched matmuls above)
   vs torch.ops.sluicegate.paged_decode_attention.
2. add + RMSNorm, rope + KV write, SiLU gate at 1, 32 and 130 rows (130: an agent's later turn,
   where the kernels split rows over the threads): torch's ops vs the kernels.
   Prefill attention's softmax for 130 queries over 1,580 keys (9 heads): torch's six ops over
   fp32 scores vs torch.ops.sluicegate.causal_softmax_ in place.
3. The default model's output projection at one row: bf16 vs its Q8_0 codes (the model's own
   logits(), the two alternated).
Rounds alternate torch and kernel; the machine's noise shows as the spread across rounds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sluicegate.engine.models.int8_weights as int8_weights  # noqa: E402
from bench.linear_pack import per_call_us  # noqa: E402
from sluicegate.engine.attention.torch_backend import (  # noqa: E402
    _attend_decode,
    _attend_decode_one_cpu,
    _one_context,
    store_kv,
)
from sluicegate.engine.kernels import cpu_ops  # noqa: E402
from sluicegate.engine.models.rope import apply_rope, rope_cache, rotation_signs  # noqa: E402

ops = torch.ops.sluicegate
BF16 = torch.bfloat16


def rounds_of(pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]], rounds: int, iters: int) -> None:
    for label, (torch_fn, kernel_fn) in pairs.items():
        times = [(per_call_us(torch_fn, iters), per_call_us(kernel_fn, iters)) for _ in range(rounds)]
        print(f"| {label} | {' / '.join(f'{t:.1f}' for t, _ in times)} | {' / '.join(f'{k:.1f}' for _, k in times)} |")


def attention(rounds: int) -> None:
    gen = torch.Generator().manual_seed(0)
    num_blocks, block_size, kv, dim, heads = 4000, 16, 3, 64, 9
    k_cache = torch.randn(num_blocks, block_size, kv, dim, generator=gen).to(BF16)
    v_cache = torch.randn(num_blocks, block_size, kv, dim, generator=gen).to(BF16)
    print("| sequences x context | torch µs | kernel µs |\n|---|---|---|")
    pairs = {}
    for batch, length in ((1, 250), (1, 1450), (8, 250), (8, 1450), (32, 100), (32, 600)):
        blocks = (length + block_size - 1) // block_size
        table = (torch.randperm(num_blocks - 1, generator=gen)[: batch * blocks] + 1).view(batch, blocks).int()
        lens = torch.full((batch,), length, dtype=torch.int32)
        q = torch.randn(batch, heads, dim, generator=gen).to(BF16)
        ctx = _one_context(table[0], length, block_size) if batch == 1 else None

        def torch_path(q: torch.Tensor = q, t: torch.Tensor = table, n: torch.Tensor = lens, m: int = length,
                       ctx: object = ctx) -> torch.Tensor:
            if ctx is not None:  # one sequence: SDPA on its cache view, as the engine did
                return _attend_decode_one_cpu(q, k_cache, v_cache, ctx, 0.125)  # type: ignore[arg-type]
            return _attend_decode(q, k_cache, v_cache, t, n, m, 0.125)

        pairs[f"{batch} x {length}"] = (torch_path, lambda q=q, t=table, n=lens: ops.paged_decode_attention(
            q, k_cache, v_cache, t, n, 0.125))
    rounds_of(pairs, rounds, 200)


def small_ops(rounds: int) -> None:
    hidden, heads, kv, dim = 576, 9, 3, 64
    weight = torch.rand(hidden).to(BF16) + 0.5
    cos, sin = rope_cache(dim, 10000.0, None, 4096, torch.device("cpu"), BF16)
    signed_sin = rotation_signs(sin)
    caches = [torch.zeros(512, 16, kv, dim, dtype=BF16) for _ in range(2)]
    print("\n| op, rows | torch µs | kernel µs |\n|---|---|---|")
    pairs = {}
    for rows in (1, 32, 130):
        x, d = torch.randn(rows, hidden).to(BF16), torch.randn(rows, hidden).to(BF16)
        gate_up = torch.randn(rows, 3072).to(BF16)
        qkv = torch.randn(rows, (heads + 2 * kv) * dim).to(BF16)
        pos = torch.arange(rows) + 100
        c, s = cos[pos, None], signed_sin[pos, None]
        slots = torch.arange(rows) + 64

        def rope_then_store(qkv: torch.Tensor = qkv, c: torch.Tensor = c, s: torch.Tensor = s,
                            slots: torch.Tensor = slots) -> torch.Tensor:
            qk = qkv[:, : (heads + kv) * dim].view(-1, heads + kv, dim)
            q, k = apply_rope(qk, c, s).split([heads, kv], dim=1)
            store_kv(k, qkv[:, (heads + kv) * dim:].view(-1, kv, dim), caches[0], caches[1], slots)
            return q

        pairs[f"add + rms_norm, {rows}"] = (lambda x=x, d=d: F.rms_norm(x + d, (hidden,), weight, 1e-5),
                                            lambda x=x, d=d: ops.add_rms_norm(x, d, weight, 1e-5))
        pairs[f"rope + KV write, {rows}"] = (rope_then_store, lambda qkv=qkv, c=c, s=s, slots=slots: ops.rope_store_kv(
            qkv, c, s, caches[0], caches[1], slots, heads, kv))
        pairs[f"silu * up, {rows}"] = (lambda g=gate_up: F.silu(g[:, :1536]) * g[:, 1536:],
                                       lambda g=gate_up: ops.silu_mul(g))
    scores = (torch.randn(9, 130, 1580) * 3).to(BF16)
    first = 1580 - 130
    future = torch.arange(1580)[None, :] > torch.arange(first, 1580)[:, None]

    def torch_softmax() -> torch.Tensor:
        bias = torch.zeros(future.shape).masked_fill_(future, float("-inf"))
        return scores.float().mul_(0.125).add_(bias).softmax(dim=-1).to(BF16)

    work = scores.clone()  # in place: the kernel's repeated calls see probabilities, same cost
    pairs["causal softmax, 9 x 130 x 1,580"] = (torch_softmax, lambda: ops.causal_softmax_(work, first, 0.125))
    rounds_of(pairs, rounds, 200)


def output_projection(rounds: int) -> None:
    from sluicegate.engine.llm import build_config
    from sluicegate.engine.llm_engine import LLMEngine
    from sluicegate.engine.models.loader import load_model

    loaded = load_model(None, BF16, torch.device("cpu"), progress=None)
    model = LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64), loaded=loaded).runner.model
    h = torch.randn(1, loaded.arch.hidden_size).to(BF16)

    def with_limit(limit: int) -> Callable[[], object]:
        def run() -> object:
            int8_weights.INT8_MAX_ROWS = limit
            return model.logits(h)
        return run

    print("\n| output projection, 1 row | bf16 µs | 8-bit codes µs |\n|---|---|---|")
    rounds_of({"model.logits": (with_limit(0), with_limit(1))}, rounds, 50)
    int8_weights.INT8_MAX_ROWS = 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_ops.load():
        sys.exit("the CPU kernels could not be built here (see the warning above)")
    attention(args.rounds)
    small_ops(args.rounds)
    output_projection(args.rounds)


if __name__ == "__main__":
    main()
