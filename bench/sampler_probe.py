"""Time of the sampler's draw at temperature > 0, per step, for B seeded rows of a 49k vocabulary:
the engine's sample() (inverse CDF, one uniform per row) against the exponential race it replaced
(argmax(p / E) with an Exp(1) value per vocabulary entry, drawn row by row from each generator).

    python bench/sampler_probe.py [--rows 1,8,32] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.linear_pack import per_call_us  # noqa: E402
from sluicegate.engine.malloc_tuning import keep_freed_memory  # noqa: E402
from sluicegate.engine.sampler import SamplingTensors, sample  # noqa: E402

VOCAB = 49_152


def exponential_race(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    probs = (logits / t.temperature.unsqueeze(1)).softmax(dim=-1)
    noise = torch.empty_like(probs)
    for i, g in enumerate(t.generators):
        noise[i].exponential_(generator=g)
    return (probs / noise).argmax(dim=-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1,8,32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the engine does at start: a step's large buffers reuse freed pages
    print("| rows | exponential race ms | sample() ms |\n|---|---|---|")
    for rows in (int(r) for r in args.rows.split(",")):
        logits = torch.randn(rows, VOCAB) * 3
        t = SamplingTensors(temperature=torch.full((rows,), 0.8), top_p=torch.ones(rows),
                            top_k=torch.zeros(rows, dtype=torch.long), min_p=torch.zeros(rows),
                            generators=[torch.Generator().manual_seed(i) for i in range(rows)],
                            any_greedy=False, top_filters=False)  # as the engine builds them for these rows
        race = per_call_us(lambda: exponential_race(logits, t), 20) / 1e3  # noqa: B023
        ours = per_call_us(lambda: sample(logits.clone(), t), 20) / 1e3  # noqa: B023
        print(f"| {rows} | {race:.2f} | {ours:.2f} |")


if __name__ == "__main__":
    main()
