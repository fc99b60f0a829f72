"""Engine benchmark: sluicegate vs HF transformers `generate`, same model, dtype and threads, one run.

    python bench/engine_bench.py [--dtype bfloat16] [--threads 2] [--requests 64] [--quick]

Prints a markdown table of ratios (timings on a shared machine are noisy; compare within one run).
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sluicegate.engine.llm import build_config  # noqa: E402
from sluicegate.engine.llm_engine import LLMEngine  # noqa: E402
from sluicegate.engine.models.loader import LoadedModel, load_model  # noqa: E402
from sluicegate.engine.params import SamplingParams  # noqa: E402

TEXT = (
    "The river ran quietly past the old mill, carrying leaves and small branches toward the sea. "
    "Engineers measured its flow every morning, writing numbers in a worn notebook that nobody read. "
)


@dataclass(frozen=True)
class Job:
    prompt_ids: tuple[int, ...]
    max_tokens: int


def make_workload(tokenizer, n: int, seed: int, prompt_range=(30, 600), out_range=(16, 256)) -> list[Job]:  # noqa: ANN001
    rng = random.Random(seed)
    base = tokenizer(TEXT * 60).input_ids
    jobs = []
    for _ in range(n):
        start = rng.randrange(0, 200)
        length = rng.randint(*prompt_range)
        jobs.append(Job(tuple(base[start:start + length]), rng.randint(*out_range)))
    return jobs


def matmul_roofline(dtype: torch.dtype) -> float:
    """Best-effort peak GFLOP/s of this CPU for `dtype` matmuls (square 1024, median of runs)."""
    a = torch.randn(1024, 1024, dtype=dtype)
    b = torch.randn(1024, 1024, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * 1024**3 / min(times) / 1e9


def run_engine(loaded: LoadedModel, jobs: list[Job], dtype: str, **options: object) -> tuple[float, int]:
    engine = LLMEngine(build_config(None, dtype=dtype, **options), loaded=loaded)
    warm = SamplingParams(max_tokens=4, min_tokens=4, temperature=0.0)
    engine.add_request(list(jobs[0].prompt_ids), warm)
    while engine.has_unfinished():
        engine.step()
    start = time.perf_counter()
    for job in jobs:
        engine.add_request(list(job.prompt_ids),
                           SamplingParams(max_tokens=job.max_tokens, min_tokens=job.max_tokens, temperature=0.0))
    produced = 0
    while engine.has_unfinished():
        produced += sum(len(o.new_token_ids) for o in engine.step())
    elapsed = time.perf_counter() - start
    engine.check_integrity()
    return elapsed, produced


def run_hf(hf_model, jobs: list[Job], batch_size: int, pad_id: int) -> tuple[float, int]:  # noqa: ANN001
    """Static batches with left padding; each batch runs to its longest output; only each request's
    own max_tokens count as useful output."""
    start = time.perf_counter()
    useful = 0
    for i in range(0, len(jobs), batch_size):
        batch = jobs[i:i + batch_size]
        width = max(len(j.prompt_ids) for j in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, job in enumerate(batch):
            ids[r, width - len(job.prompt_ids):] = torch.tensor(job.prompt_ids)
            mask[r, width - len(job.prompt_ids):] = 1
        new = max(j.max_tokens for j in batch)
        with torch.inference_mode():
            hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                              do_sample=False, pad_token_id=pad_id)
        useful += sum(j.max_tokens for j in batch)
    return time.perf_counter() - start, useful


def ttft_repeated_prefix(loaded: LoadedModel, dtype: str, prefix_caching: bool, n: int = 16) -> list[float]:
    engine = LLMEngine(build_config(None, dtype=dtype, enable_prefix_caching=prefix_caching,
                                    max_num_batched_tokens=2048, long_prefill_token_threshold=2048),
                       loaded=loaded)
    tok = engine.tokenizer
    prefix = tok(TEXT * 40).input_ids[:1500]
    rng = random.Random(1)
    ttfts = []
    for i in range(n + 1):  # request 0 warms up (and fills the cache)
        suffix = [rng.randrange(1000, 20000) for _ in range(50)]
        start = time.perf_counter()
        engine.add_request(prefix + suffix, SamplingParams(max_tokens=1, temperature=0.0))
        while engine.has_unfinished():
            engine.step()
        if i:
            ttfts.append(time.perf_counter() - start)
    engine.check_integrity()
    return ttfts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="16 requests, short outputs (smoke run)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    loaded = load_model(None, dtype, torch.device("cpu"))
    from transformers import AutoModelForCausalLM

    from sluicegate.engine.models.default_model import default_model_path
    from sluicegate.engine.models.gguf_loader import gguf_hf_dir

    hf = AutoModelForCausalLM.from_pretrained(gguf_hf_dir(default_model_path(), None), dtype=dtype).eval()
    n = 16 if args.quick else args.requests
    out_range = (8, 32) if args.quick else (16, 256)
    jobs = make_workload(loaded.tokenizer, n, args.seed, out_range=out_range)
    rows: list[tuple[str, str, str, str]] = []

    peak = matmul_roofline(dtype)
    rows.append(("CPU matmul peak (1024^3)", f"{peak:.0f} GFLOP/s", "", ""))

    e_time, e_tokens = run_engine(loaded, jobs, args.dtype, max_num_seqs=64)
    h_time, h_tokens = run_hf(hf, jobs, 32, loaded.tokenizer.pad_token_id or 0)
    e_tps, h_tps = e_tokens / e_time, h_tokens / h_time
    rows.append((f"offline mixed workload ({n} reqs) output tok/s", f"{e_tps:.0f}", f"{h_tps:.0f}",
                 f"{e_tps / h_tps:.2f}x"))

    single = [Job(jobs[0].prompt_ids[:64], 32 if args.quick else 128)]
    s_time, s_tokens = run_engine(loaded, single, args.dtype)
    hs_time, hs_tokens = run_hf(hf, single, 1, 0)
    rows.append(("single-stream decode tok/s", f"{s_tokens / s_time:.1f}", f"{hs_tokens / hs_time:.1f}",
                 f"{(s_tokens / s_time) / (hs_tokens / hs_time):.2f}x"))
    params = sum(t.numel() for t in loaded.weights.values())
    decode_flops = 2 * params * (s_tokens / s_time)
    rows.append(("single-stream decode, share of matmul peak", f"{100 * decode_flops / 1e9 / peak:.1f}%", "", ""))
    batch_flops = 2 * params * e_tps
    rows.append(("mixed workload output FLOP share of peak", f"{100 * batch_flops / 1e9 / peak:.1f}%", "", ""))

    cached = ttft_repeated_prefix(loaded, args.dtype, True, 4 if args.quick else 16)
    uncached = ttft_repeated_prefix(loaded, args.dtype, False, 4 if args.quick else 16)
    c50, u50 = statistics.median(cached), statistics.median(uncached)
    rows.append(("repeated 1500-token prefix: p50 TTFT (cache on / off)", f"{c50 * 1000:.0f} ms",
                 f"{u50 * 1000:.0f} ms", f"{u50 / c50:.1f}x lower"))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS (whole benchmark process)", f"{rss:.0f} MiB", "", ""))

    print(f"\n{args.dtype}, {args.threads} threads, {torch.__version__}\n")
    print("| measure | sluicegate | HF transformers / peer | ratio |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
