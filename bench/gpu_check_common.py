"""What every section of the GPU check shares: sizes (Scale), the report table, timing helpers."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BANDWIDTH_TB_S = [  # (substring of torch.cuda.get_device_name, HBM TB/s); first match wins
    ("GH200", 4.0), ("H200", 4.8), ("H100 PCIe", 2.0), ("H100 NVL", 3.9), ("H100", 3.35),
    ("H800", 3.35), ("A100-SXM4-80GB", 2.039), ("A100 80GB PCIe", 1.935), ("A100", 1.555),
    ("L40S", 0.864), ("A10G", 0.6), ("RTX 4090", 1.008),
]


@dataclass(frozen=True)
class Scale:
    """Sizes of one run: the real GPU check, or a tiny CPU dry run of the same code paths."""

    device: str
    decode_ctx: int = 4096
    decode_batches: tuple[int, ...] = (1, 32, 128)
    heads: int = 32
    kv_heads: int = 8
    head_dim: int = 128
    prefill_seqs: int = 8
    prefill_len: int = 1024
    gen_batches: tuple[int, ...] = (1, 32, 128)
    prompt_len: int = 64
    max_tokens: int = 128
    parity_tokens: int = 32
    max_model_len: int = 4096
    llama_1b: dict[str, Any] = field(default_factory=lambda: dict(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=8192, vocab_size=49152))


DRY = Scale(device="cpu", decode_ctx=40, decode_batches=(1, 3), heads=4, kv_heads=2, head_dim=64,
            prefill_seqs=2, prefill_len=24, gen_batches=(1, 2), prompt_len=8, max_tokens=4,
            parity_tokens=4, max_model_len=256, llama_1b=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                           num_key_value_heads=2, intermediate_size=256, vocab_size=49152))


class TimeUp(Exception):
    pass


class Report:
    def __init__(self, budget_s: float) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.deadline = time.monotonic() + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, section: str, case: str, ours: str = "", reference: str = "", note: str = "") -> None:
        self.rows.append((section, case, ours, reference, note))
        print(f"[gpu_check] {section} | {case} | {ours} | {reference} | {note}", file=sys.stderr, flush=True)

    def table(self) -> str:
        lines = ["| section | case | ours | reference | note |", "|---|---|---|---|---|"]
        lines += ["| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in row) + " |"
                  for row in self.rows]
        return "\n".join(lines)


def run_section(report: Report, name: str, need_s: float, fn: Callable[[], None]) -> None:
    """Run one section unless it no longer fits; its exception becomes a row."""
    if report.left() < need_s:
        report.add(name, "-", note=f"skipped: {report.left():.0f} s left of the budget, needs ~{need_s:.0f} s")
        return
    try:
        fn()
    except TimeUp:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the check goes on
        report.add(name, "-", note=f"error: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        free_memory()


def free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_ms(fn: Callable[[], object], min_time_s: float = 0.3) -> float:
    """Mean ms per call; triton's do_bench (clears L2 between calls) where it runs."""
    import torch

    if torch.cuda.is_available():
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=int(min_time_s * 1000)))
    fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < min_time_s or calls < 2:
        fn()
        calls += 1
    return (time.perf_counter() - start) * 1000 / calls
