"""What an agent's later turn costs the engine: one prefix-cached extend (new tokens after a cached
prompt) and one new prompt, with the CPU kernels on prefill rows switched on and off round by round
in one engine (same weights, same cache).

    python bench/extend_probe.py [--cached 1450] [--new 130] [--rounds 6] [--threads 2] [--ops]

Settings: "kernels" (the engine as it runs), "torch softmax" (the prefill softmax as six torch ops
over fp32 scores), "torch ops" (every forward of more than 32 rows in torch's ops: norms, rope,
SiLU, softmax). ms per request from its arrival to its one output token; compare within a run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluicegate.engine.attention import torch_backend  # noqa: E402
from sluicegate.engine.llm import build_config  # noqa: E402
from sluicegate.engine.llm_engine import LLMEngine  # noqa: E402
from sluicegate.engine.models.loader import load_model  # noqa: E402
from sluicegate.engine.params import SamplingParams  # noqa: E402


def run_one(engine: LLMEngine, prompt: list[int]) -> float:
    """ms from adding the prompt to its single greedy token."""
    engine.add_request(prompt, SamplingParams(max_tokens=1, temperature=0.0))
    start = time.perf_counter()
    while engine.has_unfinished():
        engine.step()
    return (time.perf_counter() - start) * 1e3


@contextmanager
def torch_softmax() -> Iterator[None]:
    fused = torch_backend._attend_extend_cpu

    def unfused(q, k_cache, v_cache, ctx, scale, fused_softmax=False):  # noqa: ANN001, ANN202
        return fused(q, k_cache, v_cache, ctx, scale, False)

    torch_backend._attend_extend_cpu = unfused  # type: ignore[assignment]
    try:
        yield
    finally:
        torch_backend._attend_extend_cpu = fused


@contextmanager
def torch_ops_over(engine: LLMEngine, rows: int) -> Iterator[None]:
    """Forwards of more than `rows` tokens run with the kernels off (model and attention)."""
    model, backend = engine.runner.model, engine.backend
    forward = model.forward

    def switched(input_ids, positions, kv_caches, meta):  # noqa: ANN001, ANN202
        if input_ids.shape[0] <= rows:
            return forward(input_ids, positions, kv_caches, meta)
        model.cpu_kernels = backend.cpu_kernels = False
        try:
            return forward(input_ids, positions, kv_caches, meta)
        finally:
            model.cpu_kernels = backend.cpu_kernels = True

    model.forward = switched
    try:
        yield
    finally:
        del model.forward


@contextmanager
def as_is() -> Iterator[None]:
    yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cached", type=int, default=1450, help="tokens of the cached prompt")
    ap.add_argument("--new", type=int, default=130, help="new tokens of the later turn")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's top ops for 3 extends")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(None, torch.bfloat16, torch.device("cpu"))
    engine = LLMEngine(build_config(None, dtype="bfloat16"), loaded=loaded)
    if not engine.runner.model.cpu_kernels:
        sys.exit("the CPU kernels are not in use here (no compiler, or not a bf16 CPU engine)")
    cached = [1000 + (i * 7) % 20000 for i in range(args.cached)]
    run_one(engine, cached)
    settings: dict[str, Callable[[], AbstractContextManager[None]]] = {
        "kernels": as_is, "torch softmax": torch_softmax, "torch ops": lambda: torch_ops_over(engine, 32)}
    times: dict[tuple[str, str], list[float]] = {(s, w): [] for s in settings for w in ("extend", "new prompt")}
    serial = 0
    for _ in range(args.rounds):
        for name, setting in settings.items():
            serial += 1
            with setting():
                times[(name, "extend")].append(run_one(engine, cached + [30000 + serial * 200 + i for i in range(args.new)]))
                times[(name, "new prompt")].append(run_one(engine, [3000 + serial * 11 + (i * 13) % 9000
                                                                    for i in range(args.cached)]))
    print(f"{args.threads} thread(s); extend: {args.new} new tokens after {args.cached} cached; new prompt: "
          f"{args.cached} tokens; ms, {args.rounds} rounds\n")
    print("| setting | request | median ms | min ms | rounds |\n| --- | --- | --- | --- | --- |")
    for (name, what), values in times.items():
        print(f"| {name} | {what} | {statistics.median(values):.1f} | {min(values):.1f} | "
              f"{' / '.join(f'{v:.0f}' for v in values)} |")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for r in range(3):
                run_one(engine, cached + [40000 + r * 200 + i for i in range(args.new)])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


if __name__ == "__main__":
    main()
