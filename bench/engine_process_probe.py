"""Would the engine in a process of its own step faster under a busy gateway? One stream decodes in
`engine.LLM` while a consumer does Python work for every token (what the event loop and the client
do): alone, as a thread in the engine's process (sharing its GIL), or as a separate process fed
through a pipe.

    python bench/engine_process_probe.py {alone,thread,process} [--threads 2] [--work-ms 0.8]

Prints ITL p50 per round (three rounds of 96 tokens). Run the three modes one after the other.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = {"id": "chatcmpl-1", "choices": [{"delta": {"content": "hello"}, "index": 0}]}


def _work(iterations: int) -> None:
    for _ in range(iterations):
        json.dumps(CHUNK)


def _iterations_for(ms: float) -> int:
    start = time.perf_counter()
    _work(1000)
    return max(1, int(1000 * ms / ((time.perf_counter() - start) * 1e3)))


def _thread_consumer(tick: threading.Event, stop: threading.Event, iterations: int) -> None:
    while not stop.is_set():
        if tick.wait(0.1):
            tick.clear()
            _work(iterations)


def _process_consumer(conn: Connection, iterations: int) -> None:
    while conn.recv() is not None:
        _work(iterations)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["alone", "thread", "process"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work-ms", type=float, default=0.8)
    args = ap.parse_args()
    from sluicegate.engine.llm import LLM
    from sluicegate.engine.params import SamplingParams

    iterations = _iterations_for(args.work_ms)
    llm = LLM(num_threads=args.threads)
    ids = llm.tokenizer.encode("Write a long story about a lighthouse keeper.")
    params = SamplingParams(max_tokens=96, temperature=0, ignore_eos=True)
    tick, stop = threading.Event(), threading.Event()
    parent, child = mp.Pipe()
    if args.mode == "thread":
        threading.Thread(target=_thread_consumer, args=(tick, stop, iterations), daemon=True).start()
    if args.mode == "process":
        proc = mp.get_context("spawn").Process(target=_process_consumer, args=(child, iterations))
        proc.start()
    for round_ in range(3):
        llm.engine.add_request(list(ids), params)
        times = []
        while llm.engine.has_unfinished():
            llm.engine.step()
            times.append(time.perf_counter())
            if args.mode == "thread":
                tick.set()
            elif args.mode == "process":
                parent.send(1)
        gaps = sorted(b - a for a, b in zip(times[1:], times[2:]))  # the first step is the prefill
        print(f"{args.mode}, {args.threads} threads, round {round_}: ITL p50 {1000 * gaps[len(gaps) // 2]:.2f} ms")
    stop.set()
    if args.mode == "process":
        parent.send(None)
        proc.join()


if __name__ == "__main__":
    main()
