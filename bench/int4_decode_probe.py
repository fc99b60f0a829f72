"""What 4-bit decode (engine/models/int4_weights.py) buys and costs, in the engine alone.

    python bench/int4_decode_probe.py [--rows 1,2,4,6,8,12,32] [--rounds 3] [--threads 2]

1. ms per decode step at each batch size with the 4-bit codes used for every row count vs never
   (one engine, INT4_MAX_ROWS switched between rounds, so both see the same weights and cache):
   where the cut-over belongs.
2. Greedy closeness to fp32 (whose engine matches HF token for token): 16 chat prompts, 64 tokens,
   one request at a time, for bf16 alone and bf16 with 4-bit decode; the token at which each
   answer first differs from fp32's.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sluicegate.engine.models.int4_weights as int4_weights  # noqa: E402
from bench.decode_profile import _fill, alternating_rounds  # noqa: E402
from sluicegate.engine.llm import build_config  # noqa: E402
from sluicegate.engine.llm_engine import LLMEngine  # noqa: E402
from sluicegate.engine.models.loader import load_model  # noqa: E402
from sluicegate.engine.params import SamplingParams  # noqa: E402

PROMPTS = ["Write a haiku about rivers.", "What is the capital of France?", "List three prime numbers.",
           "Explain what a KV cache is in one sentence.", "Translate 'good morning' into Spanish.",
           "Give me a JSON object with keys a and b.", "Tell me a story about a fox.",
           "How do I sort a list in Python?", "What is 17 times 3?", "Name a famous painter.",
           "Describe the color blue.", "Why is the sky blue?", "Write a function that adds two numbers.",
           "What day comes after Monday?", "Summarize: cats are pets.", "Say hello."]


def step_times(rows_list: list[int], rounds: int) -> None:
    loaded = load_model(None, torch.bfloat16, torch.device("cpu"), progress=None)
    engine = LLMEngine(build_config(None, dtype="bfloat16", max_num_seqs=64), loaded=loaded)
    print("| rows | bf16 ms/step | 4-bit ms/step |\n|---|---|---|")
    for rows in rows_list:
        _fill(engine, rows, 64, 40 * rounds + 16)
        for _ in range(4):
            engine.step()
        times = alternating_rounds(engine, {limit: partial(setattr, int4_weights, "INT4_MAX_ROWS", limit)
                                            for limit in (0, 1 << 20)}, rounds)
        bf16, four = (" / ".join(f"{t:.1f}" for t in times[k]) for k in times)
        print(f"| {rows} | {bf16} | {four} |", flush=True)
        for request_id in list(engine.requests):
            engine.abort(request_id)
        while engine.has_unfinished():
            engine.step()


def greedy_closeness() -> None:
    bf16 = load_model(None, torch.bfloat16, torch.device("cpu"), progress=None)
    engines = {"fp32": LLMEngine(build_config(None, dtype="float32"),
                                 loaded=load_model(None, torch.float32, torch.device("cpu"), progress=None)),
               "bf16": LLMEngine(build_config(None, dtype="bfloat16", int4_decode=False), loaded=bf16),
               "bf16 + 4-bit decode": LLMEngine(build_config(None, dtype="bfloat16"), loaded=bf16)}
    tok = bf16.tokenizer
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                           tokenize=False)).input_ids for p in PROMPTS]
    answers: dict[str, list[list[int]]] = {}
    for name, engine in engines.items():
        answers[name] = []
        for ids in prompts:  # one at a time: every decode step is a single row
            engine.add_request(ids, SamplingParams(max_tokens=64, temperature=0))
            tokens: list[int] = []
            while engine.has_unfinished():
                for out in engine.step():
                    tokens += out.new_token_ids
            answers[name].append(tokens)
    for name in ("bf16", "bf16 + 4-bit decode"):
        firsts = [next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), min(len(x), len(y)))
                  for x, y in zip(answers["fp32"], answers[name])]
        same = sum(x == y for x, y in zip(answers["fp32"], answers[name]))
        print(f"{name}: first token differing from fp32 {firsts}, mean {sum(firsts) / len(firsts):.1f}; "
              f"{same}/{len(firsts)} answers identical")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,2,4,6,8,12,32")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    step_times([int(r) for r in args.rows.split(",")], args.rounds)
    greedy_closeness()


if __name__ == "__main__":
    main()
