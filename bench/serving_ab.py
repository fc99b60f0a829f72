"""Two source trees served one after the other, alternating, through the serving benchmark's levels:
an A/B of a change on the path users hit (HTTP, streaming, the server's defaults).

    git worktree add /tmp/before HEAD~1
    python bench/serving_ab.py /tmp/before . [--rounds 2] [--levels 1,8,32]

Each round starts `sluicegate serve` from each tree in turn (swapping the order every round), runs
serving_bench's levels against it (new prompts, then the same prompts cached) and stops it. Only
one server runs at a time; compare the trees within a round, the rounds show the noise. The
seeded temperature-0.8 requests are serving_bench's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_bench import run_server  # noqa: E402
from bench.serving_common import markdown_table, save, start_sluicegate  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tree_a", type=Path)
    ap.add_argument("tree_b", type=Path)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--requests-per-slot", type=int, default=2)
    ap.add_argument("--prompt-words", type=int, default=150)
    ap.add_argument("--serve-args", default="", help="extra `sluicegate serve` flags for both trees")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    trees = {"A": args.tree_a, "B": args.tree_b}
    serve_args = ["--max-num-seqs", str(max(levels) * 2), *args.serve_args.split()]
    rows: list[dict[str, Any]] = []
    for round_no in range(args.rounds):
        for label in ("AB" if round_no % 2 == 0 else "BA"):
            server = start_sluicegate(serve_args, tree=trees[label], name=f"sluicegate-{label}")
            try:
                rows += [{**r, "tree": label, "round": round_no + 1} for r in run_server(server, levels, args)]
            finally:
                server.stop()
    table_rows = []
    for level in levels:
        for kind in ("new", "cached"):
            cells: list[Any] = [level, kind]
            for label in "AB":
                mine = [r for r in rows if r["tree"] == label and r["concurrency"] == level and r["prompts"] == kind]
                cells.append(" / ".join(f"{r['tok_per_s']:.1f}" for r in mine))
                cells.append(" / ".join(f"{r['itl_p50_ms']:.1f}" for r in mine))
            table_rows.append(cells)
    text = markdown_table(["concurrency", "prompts", "A tok/s (per round)", "A ITL p50 ms", "B tok/s (per round)",
                           "B ITL p50 ms"], table_rows)
    text += f"\n\nA = {trees['A']}, B = {trees['B']}, {args.rounds} rounds, order AB then BA."
    print(text)
    save("serving_ab", {"rows": rows, "trees": {k: str(v) for k, v in trees.items()}}, text, False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
