"""The engine's offline workload alone, for A/B runs of two trees side by side on the same machine.

    git worktree add /tmp/before ab63806
    python bench/engine_ab.py /tmp/before & python bench/engine_ab.py . ; wait

Prints output tok/s of `engine_bench.run_engine` (bf16, 1 torch thread, 64 requests, seed 0) and of
one stream (a 64-token prompt, 128 output tokens), using the engine package of TREE (a tree with
sluicegate/, i.e. from the namespace move on). Run two at once so both see the same machine;
compare within a pair.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", help="repo checkout whose engine/ is measured")
    parser.add_argument("--requests", type=int, default=64)
    args = parser.parse_args()
    tree = str(Path(args.tree).resolve())
    sys.path[:0] = [tree, tree + "/bench"]  # that tree's engine, not the installed one
    torch.set_num_threads(1)
    from engine_bench import Job, make_workload, run_engine

    from sluicegate.engine.models.loader import load_model

    loaded = load_model(None, torch.bfloat16, torch.device("cpu"))
    jobs = make_workload(loaded.tokenizer, args.requests, 0)
    run_engine(loaded, jobs[:2], "bfloat16")  # warm-up
    seconds, tokens = run_engine(loaded, jobs, "bfloat16")
    single_s, single_tokens = run_engine(loaded, [Job(jobs[0].prompt_ids[:64], 128)], "bfloat16")
    print(f"{tree}: offline {tokens / seconds:.1f} output tok/s ({tokens} tokens in {seconds:.1f} s); "
          f"single stream {single_tokens / single_s:.1f} tok/s")


if __name__ == "__main__":
    main()
