"""One prepared GPU check, printed as one markdown table (run it through bench/gpu_check.sh).

Sections, each guarded so one failure or a missing package becomes a table row, never a crash:
  1. kernel tests on the GPU (pytest tests/kernels, native triton, no interpreter)
  2. kernel microbench (bench/gpu_check_kernels.py): paged decode attention GB/s at batch 1/32/128,
     one varlen prefill, the grammar-bitmask kernel; each against the torch reference, each
     output checked against it first
  3. engine (bench/gpu_check_engine.py): greedy parity with HF transformers on the default model
     (fp32 token for token; bf16 for information), CUDA-graph vs eager decode (same tokens,
     tok/s), output tok/s at batch 1/32/128 vs HF and as a share of the memory-bandwidth
     roofline; the same throughput rows for a random-weight 1B Llama.

The whole run keeps to --budget-s (default 285 s): a section that no longer fits is reported as
skipped, and SIGTERM (the shell wrapper's timeout) prints the table gathered so far.
`--dry-run` runs every section on CPU with tiny shapes (TRITON_INTERPRET=1) to test the script.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling gpu_check_* modules

from gpu_check_common import DRY, REPO, Report, Scale, TimeUp, run_section  # noqa: E402
from gpu_check_engine import bandwidth_bytes_per_s, engine_sections  # noqa: E402
from gpu_check_kernels import kernel_tests, microbench  # noqa: E402


def header(report: Report, s: Scale) -> None:
    import torch

    versions = [f"torch {torch.__version__}"]
    for mod in ("triton", "transformers"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001
            versions.append(f"{mod} missing")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (dry run)"
    bw = bandwidth_bytes_per_s()
    report.add("machine", device, f"{bw / 1e12:.2f} TB/s" if bw else "bandwidth n/a", "", ", ".join(versions))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=285.0)
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU, TRITON_INTERPRET=1")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder to also write gpu_check.md to")
    args = parser.parse_args()
    if args.dry_run:
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported
    scale = DRY if args.dry_run else Scale(device="cuda")
    report = Report(args.budget_s)

    def on_term(signum: int, frame: types.FrameType | None) -> None:
        raise TimeUp()

    signal.signal(signal.SIGTERM, on_term)
    try:
        header(report, scale)
        if not args.dry_run:
            import torch

            if not torch.cuda.is_available():
                report.add("machine", "-", note="no CUDA device: nothing to check (use --dry-run on CPU)")
                raise TimeUp()
        if not args.skip_tests:
            run_section(report, "kernel tests", 40, lambda: kernel_tests(report, args.dry_run))
        run_section(report, "kernel microbench", 20, lambda: microbench(report, scale))
        engine_sections(report, scale)
    except TimeUp:
        report.add("-", "-", note="stopped: time limit or no device; rows above are complete")
    table = report.table()
    print(table, flush=True)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
