"""Where a CPU decode step spends its time: per-step wall time split into host phases, plus the
top torch ops, for an LLMEngine decode loop at a given batch size.

    python bench/decode_profile.py [--batch 1] [--steps 64] [--threads 1] [--dtype bfloat16] [--ops]

Wall times on a shared machine are noisy; run it twice and compare the split, not the total.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluicegate.engine.llm import build_config  # noqa: E402
from sluicegate.engine.llm_engine import LLMEngine  # noqa: E402
from sluicegate.engine.models.loader import load_model  # noqa: E402
from sluicegate.engine.params import SamplingParams  # noqa: E402


def _fill(engine: LLMEngine, batch: int, prompt_len: int, max_tokens: int, temperature: float = 0.0) -> None:
    """Add `batch` requests (greedy at temperature 0, else seeded) and run their prefills so every
    later step is decode only."""
    base = list(range(1000, 1000 + prompt_len))
    for i in range(batch):
        seed = i if temperature > 0 else None
        engine.add_request([t + i for t in base], SamplingParams(max_tokens=max_tokens, min_tokens=max_tokens,
                                                                  temperature=temperature, seed=seed))
    while any(r.num_computed_tokens < r.num_prompt_tokens for r in engine.requests.values()):
        engine.step()


Switch = TypeVar("Switch")


def alternating_rounds(engine: LLMEngine, switches: dict[Switch, Callable[[], None]], rounds: int,
                       steps: int = 20) -> dict[Switch, list[float]]:
    """ms per step for each setting, its switch called before each of its rounds of `steps` steps,
    the settings alternating round by round (same weights and cache; contexts grow by `steps`
    tokens a round, so compare within a round)."""
    times: dict[Switch, list[float]] = {key: [] for key in switches}
    for _ in range(rounds):
        for key, switch in switches.items():
            switch()
            start = time.perf_counter()
            for _ in range(steps):
                engine.step()
            times[key].append((time.perf_counter() - start) / steps * 1e3)
    return times


def _timed_phases(engine: LLMEngine, steps: int) -> dict[str, float]:
    """Wrap the step's parts (methods on the engine's members) with timers for `steps` steps."""
    totals: dict[str, float] = defaultdict(float)
    wrapped: list[tuple[object, str, object]] = []

    def wrap(obj: object, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def timed(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                totals[label] += time.perf_counter() - t

        wrapped.append((obj, name, fn))
        setattr(obj, name, timed)

    import sluicegate.engine.llm_engine as le
    import sluicegate.engine.runner as rn

    wrap(engine.scheduler, "schedule", "schedule")
    wrap(engine.scheduler, "update", "scheduler.update")
    wrap(engine.runner.model, "forward", "model.forward")
    wrap(engine.runner.model, "logits", "model.logits")
    wrap(rn.AttentionMetadata, "build", "metadata.build")
    wrap(le, "build_sampling_tensors", "sampling tensors")
    wrap(le, "sample", "sample")
    wrap(engine, "_process", "process (stop checks, detok)")
    start = time.perf_counter()
    for _ in range(steps):
        engine.step()
    totals["step total"] = time.perf_counter() - start
    for obj, name, fn in wrapped:
        setattr(obj, name, fn)
    return totals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--temperature", type=float, default=0.0, help="above 0: seeded sampling, as the serving bench asks")
    ap.add_argument("--ops", action="store_true", help="also print torch.profiler's top ops")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(None, getattr(torch, args.dtype), torch.device("cpu"))
    engine = LLMEngine(build_config(None, dtype=args.dtype, max_num_seqs=max(64, args.batch)), loaded=loaded)
    total_steps = 2 * args.steps + 8
    _fill(engine, args.batch, args.prompt_len, total_steps + 4, args.temperature)
    for _ in range(8):
        engine.step()
    totals = _timed_phases(engine, args.steps)
    per = 1000 / args.steps
    print(f"batch {args.batch}, {args.steps} decode steps, {args.threads} thread(s), {args.dtype}, "
          f"temperature {args.temperature}")
    for label, secs in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {label:32s} {secs * per:8.3f} ms/step")
    if args.ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                engine.step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
        events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        print(f"aten op calls per step: {sum(e.count for e in events) / args.steps:.0f}")


if __name__ == "__main__":
    main()
