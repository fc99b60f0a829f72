"""Grammar backends on the schema data: compile time, mask time, coverage, compliance.

    python bench/grammar_bench.py [--backends llguidance,outlines] [--limit N] [--budget-s S] [files…]

Per backend per file: compile time p50/p99/max (first compile, no cache), mask fill time per
token mean/p99 (the default model's vocabulary, 49152 tokens), declared coverage (schemas that
compile) and compliance (tests judged right among compiled schemas). Prints a markdown table.
Defaults: the shared data files when ../shared/data/schemas exists, else the committed sample.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sluicegate.grammars import get_backend  # noqa: E402
from sluicegate.grammars.conformance import FileSummary, check_case, read_cases  # noqa: E402
from sluicegate.grammars.vocab import vocab_size_of  # noqa: E402
from tests.grammars.conftest import SAMPLE_SCHEMAS, SHARED_SCHEMAS, load_default_tokenizer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(backend_name: str, tokenizer: object, path: Path, limit: int | None, budget_s: float) -> FileSummary:
    backend = get_backend(backend_name, tokenizer)
    summary = FileSummary(path.stem)
    deadline = time.monotonic() + budget_s
    vocab_size = vocab_size_of(tokenizer)
    for case in itertools.islice(read_cases(path), limit):
        if time.monotonic() > deadline:
            break
        summary.add(check_case(backend, tokenizer, case, vocab_size))
    return summary


def row(backend: str, s: FileSummary) -> str:
    compiled_times = [t * 1e3 for t in s.compile_seconds]
    mask_us = [t * 1e6 for t in s.mask_seconds]
    mean_mask = statistics.fmean(mask_us) if mask_us else float("nan")
    return (
        f"| {backend} | {s.name} | {s.schemas} | {percentile(compiled_times, 0.5):.2f} | "
        f"{percentile(compiled_times, 0.99):.2f} | {max(compiled_times, default=float('nan')):.1f} | "
        f"{mean_mask:.1f} | {percentile(mask_us, 0.99):.1f} | {s.coverage:.1%} | {s.compliance:.2%} | "
        f"{s.invalid_accepted} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--backends", default="llguidance,outlines")
    parser.add_argument("--limit", type=int, default=None, help="schemas per file (default: all)")
    parser.add_argument("--budget-s", type=float, default=120.0, help="wall-clock budget per backend per file")
    args = parser.parse_args()
    files = args.files or sorted((SHARED_SCHEMAS if SHARED_SCHEMAS.is_dir() else SAMPLE_SCHEMAS).glob("*.jsonl"))
    tokenizer = load_default_tokenizer()
    print(
        "| backend | file | schemas run | compile p50 ms | compile p99 ms | compile max ms | "
        "mask mean µs/token | mask p99 µs | coverage | compliance | invalid accepted |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for backend in args.backends.split(","):
        for path in files:
            print(row(backend, run(backend, tokenizer, path, args.limit, args.budget_s)), flush=True)


if __name__ == "__main__":
    main()
