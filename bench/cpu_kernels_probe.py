"""What the CPU kernels (engine/kernels/cpu_ops.py) buy, in the engine alone.

    python bench/cpu_kernels_probe.py [--rows 1,8,32] [--rounds 4] [--threads 2] [--prompt-len 200]

One engine; its model's `cpu_kernels` switch flipped between rounds of 20 decode steps, so both
sides see the same weights, cache and context lengths (which grow by 20 tokens a round: compare
within a round). Seeded sampling at temperature 0.8, as the serving bench asks. Then, at one row, the output
projection read as its 8-bit codes or in bf16, alternated the same way; and how often the two
sides' greedy answers agree (the norm's neighbouring roundings and fp32 attention move near-ties).
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sluicegate.engine.models.int8_weights as int8_weights  # noqa: E402
from bench.decode_profile import _fill, alternating_rounds  # noqa: E402
from sluicegate.engine.kernels import cpu_ops  # noqa: E402
from sluicegate.engine.llm import build_config  # noqa: E402
from sluicegate.engine.llm_engine import LLMEngine  # noqa: E402
from sluicegate.engine.models.loader import load_model  # noqa: E402
from sluicegate.engine.params import SamplingParams  # noqa: E402


def _drain(engine: LLMEngine) -> None:
    for request_id in list(engine.requests):
        engine.abort(request_id)
    while engine.has_unfinished():
        engine.step()


def set_kernels(engine: LLMEngine, on: bool) -> None:
    """The model's kernels (norms, rope + KV write, SiLU) and the attention backend's decode kernel."""
    engine.runner.model.cpu_kernels = on
    engine.backend.cpu_kernels = on  # type: ignore[attr-defined]


def step_times(engine: LLMEngine, rows_list: list[int], rounds: int, prompt_len: int) -> None:
    print("| rows | torch ops ms/step | CPU kernels ms/step |\n|---|---|---|")
    for rows in rows_list:
        _fill(engine, rows, prompt_len, 40 * rounds + 16, temperature=0.8)
        for _ in range(4):
            engine.step()
        times = alternating_rounds(engine, {on: partial(set_kernels, engine, on) for on in (False, True)}, rounds)
        eager, fused = (" / ".join(f"{t:.2f}" for t in times[k]) for k in times)
        print(f"| {rows} | {eager} | {fused} |", flush=True)
        _drain(engine)
    set_kernels(engine, True)


def int8_head_times(engine: LLMEngine, rounds: int, prompt_len: int) -> None:
    """One row: the output projection read as its Q8_0 codes (engine/models/int8_weights.py) or in bf16."""
    _fill(engine, 1, prompt_len, 60 * rounds + 16, temperature=0.8)
    for _ in range(4):
        engine.step()
    times = alternating_rounds(engine, {limit: partial(setattr, int8_weights, "INT8_MAX_ROWS", limit)
                                        for limit in (0, 1)}, rounds, steps=30)
    print("\n| output projection at 1 row | ms/step |\n|---|---|")
    for limit, label in ((0, "bf16"), (1, "8-bit codes")):
        print(f"| {label} | {' / '.join(f'{t:.2f}' for t in times[limit])} |")
    _drain(engine)
    int8_weights.INT8_MAX_ROWS = 1


def greedy_agree(engine: LLMEngine) -> None:
    outputs = {}
    for kernels in (False, True):
        set_kernels(engine, kernels)
        ids = [engine.add_request(list(range(500 + i, 564 + i)), SamplingParams(max_tokens=48, temperature=0.0))
               for i in range(4)]
        tokens: dict[str, list[int]] = {i: [] for i in ids}
        while engine.has_unfinished():
            for out in engine.step():
                tokens[out.request_id] += out.new_token_ids
        outputs[kernels] = [tokens[i] for i in ids]
    same = sum(a == b for a, b in zip(outputs[False], outputs[True]))
    print(f"greedy answers identical with and without the kernels: {same} of {len(outputs[True])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", default="1,8,32")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-len", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if not cpu_ops.load():
        sys.exit("the CPU kernels could not be built here (see the warning above)")
    loaded = load_model(None, torch.bfloat16, torch.device("cpu"), progress=None)
    engine = LLMEngine(build_config(None, dtype="bfloat16", max_num_seqs=64), loaded=loaded)
    step_times(engine, [int(r) for r in args.rows.split(",")], args.rounds, args.prompt_len)
    int8_head_times(engine, args.rounds, args.prompt_len)
    # no prefix cache: the second pass must compute the same prompts the same way, not extend a cached prefix
    greedy_agree(LLMEngine(build_config(None, dtype="bfloat16", enable_prefix_caching=False), loaded=loaded))


if __name__ == "__main__":
    main()
