"""Does the thread that steps the engine matter? One stream decoded by the engine built on the main
thread and stepped (a) on the main thread, (b) on a side thread as `AsyncEngine` does, and (c) on a
side thread without releasing the builder's OpenMP team (engine/openmp_workers.py). No HTTP: any
gap between (a) and (c) is the OpenMP runtime, not the gateway. Each mode runs in a fresh process,
modes alternate over rounds.

    python bench/step_thread_probe.py [--threads 2] [--max-tokens 200] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = ("main", "thread", "thread-unreleased")
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."


def decode_rate(mode: str, threads: int, max_tokens: int) -> float:
    """Decode tok/s of one greedy stream (prefill left out), stepped as `mode` says."""
    import sluicegate.engine.llm_engine as llm_engine
    from sluicegate.engine.llm import LLM
    from sluicegate.engine.params import SamplingParams

    if mode == "thread-unreleased":
        llm_engine.release_openmp_workers = lambda: False  # type: ignore[assignment]
    llm = LLM(num_threads=threads)
    ids = llm.tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                            tokenize=True, return_dict=False)
    params = SamplingParams(max_tokens=max_tokens, temperature=0, ignore_eos=True)
    rates: list[float] = []

    def run_twice() -> None:  # the first run warms up
        for _ in range(2):
            llm.engine.add_request(list(ids), params)
            stamps: list[float] = []
            while llm.engine.has_unfinished():
                if llm.engine.step():
                    stamps.append(time.perf_counter())
            rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))

    if mode == "main":
        run_twice()
    else:
        side = threading.Thread(target=run_twice)
        side.start()
        side.join()
    return rates[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(decode_rate(args.mode, args.threads, args.max_tokens)))
        return
    results: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--threads", str(args.threads),
                                  "--max-tokens", str(args.max_tokens)], check=True, capture_output=True, text=True)
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| stepped on ({args.threads} torch threads) | decode tok/s per round |")
    print("|---|---|")
    for mode, rates in results.items():
        print(f"| {mode} | {' / '.join(f'{r:.1f}' for r in rates)} |")


if __name__ == "__main__":
    main()
