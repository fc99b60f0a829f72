"""GPU check sections 1-2: the kernel tests on the device, and kernel microbenchmarks against the
torch reference (each output checked against it first)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from gpu_check_common import REPO, Report, Scale, bench_ms, free_memory


# ---- 1. kernel tests -------------------------------------------------------------------------
def kernel_tests(report: Report, dry: bool) -> None:
    timeout = max(30.0, min(150.0, report.left() - 120))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET" or dry}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/kernels"]
    if dry:
        cmd += ["-k", "test_store_kv_matches_reference"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        report.add("kernel tests", "pytest tests/kernels", note=f"timed out after {timeout:.0f} s")
        return
    out = proc.stdout + proc.stderr
    summary = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    failed = [ln.split(" ")[1] for ln in out.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
    if "No module named pytest" in out:
        report.add("kernel tests", "pytest tests/kernels", note="skipped: pytest is not installed "
                   "(the microbench below still checks every kernel output against the reference)")
        return
    note = "; ".join(failed[:4]) if failed else ("" if proc.returncode == 0 else out[-300:])
    report.add("kernel tests", "pytest tests/kernels", summary[-1].strip("= ") if summary else f"rc {proc.returncode}",
               "", f"{time.perf_counter() - start:.0f} s; {note}".strip("; "))


# ---- 2. kernel microbench --------------------------------------------------------------------
def _decode_case(s: Scale, batch: int):  # noqa: ANN202 - returns (q, k_cache, v_cache, meta)
    import torch

    from sluicegate.engine.attention.metadata import AttentionMetadata

    block, dtype = 16, torch.bfloat16
    blocks_per_seq = (s.decode_ctx + block - 1) // block
    num_blocks = batch * blocks_per_seq
    shape = (num_blocks, block, s.kv_heads, s.head_dim)
    k_cache = torch.randn(shape, dtype=dtype, device=s.device)
    v_cache = torch.randn(shape, dtype=dtype, device=s.device)
    table = torch.randperm(num_blocks, device=s.device).view(batch, blocks_per_seq).int()
    meta = AttentionMetadata(
        query_start_loc=torch.arange(batch + 1, dtype=torch.int32, device=s.device),
        seq_lens=torch.full((batch,), s.decode_ctx, dtype=torch.int32, device=s.device),
        block_tables=table, slot_mapping=torch.zeros(batch, dtype=torch.int64, device=s.device),
        max_query_len=1, max_seq_len=s.decode_ctx, query_lens_cpu=[1] * batch,
        seq_lens_cpu=[s.decode_ctx] * batch)
    q = torch.randn(batch, s.heads, s.head_dim, dtype=dtype, device=s.device)
    return q, k_cache, v_cache, meta


def microbench(report: Report, s: Scale) -> None:
    from sluicegate.engine.attention.torch_backend import TorchAttentionBackend
    from sluicegate.engine.attention.triton_backend import TritonAttentionBackend

    ours, ref = TritonAttentionBackend(), TorchAttentionBackend()
    for batch in s.decode_batches:
        _decode_bench(report, s, batch, ours, ref)
        free_memory()
    _prefill_bench(report, s, ours, ref)
    _bitmask_bench(report, s)


def _bitmask_bench(report: Report, s: Scale) -> None:
    """Grammar bitmask on [batch, vocab] logits: the triton kernel vs torch's unpack + masked_fill."""
    import torch

    from sluicegate.engine.kernels.token_bitmask import apply_token_bitmask_triton
    from sluicegate.engine.token_bitmask import apply_token_bitmask_torch

    batch, vocab = max(s.decode_batches), 49152
    logits = torch.randn(batch, vocab, device=s.device)
    bitmask = torch.randint(-2**31, 2**31 - 1, (batch, (vocab + 31) // 32), dtype=torch.int64,
                            device=s.device).to(torch.int32)
    a, b = logits.clone(), logits.clone()
    apply_token_bitmask_triton(a, bitmask)
    apply_token_bitmask_torch(b, bitmask)
    same = bool(torch.equal(a, b))
    t_ours = bench_ms(lambda: apply_token_bitmask_triton(logits.clone(), bitmask))
    t_ref = bench_ms(lambda: apply_token_bitmask_torch(logits.clone(), bitmask))
    report.add("grammar bitmask", f"batch {batch} x vocab {vocab} (incl. a logits copy)",
               f"{t_ours * 1000:.0f} us", f"torch {t_ref * 1000:.0f} us",
               f"{t_ref / t_ours:.1f}x; " + ("identical" if same else "MISMATCH"))


def _decode_bench(report: Report, s: Scale, batch: int, ours, ref) -> None:  # noqa: ANN001
    q, k_cache, v_cache, meta = _decode_case(s, batch)
    scale = s.head_dim ** -0.5
    got = ours.attend(q, k_cache, v_cache, meta, scale)
    err = (got.float() - ref.attend(q, k_cache, v_cache, meta, scale).float()).abs().max().item()
    # bytes: the K and V each sequence reads, plus q and out
    nbytes = 2 * batch * s.decode_ctx * s.kv_heads * s.head_dim * 2 + 2 * q.numel() * 2
    t_ours = bench_ms(lambda: ours.attend(q, k_cache, v_cache, meta, scale))
    t_ref = bench_ms(lambda: ref.attend(q, k_cache, v_cache, meta, scale))
    report.add("decode attention", f"batch {batch}, ctx {s.decode_ctx}, {s.heads}/{s.kv_heads} heads, "
               f"d {s.head_dim}, bf16", f"{nbytes / t_ours / 1e6:.0f} GB/s ({t_ours:.3f} ms)",
               f"torch {nbytes / t_ref / 1e6:.0f} GB/s ({t_ref:.3f} ms)",
               f"{t_ref / t_ours:.1f}x; max abs err {err:.1e}" + ("" if err < 5e-2 else " MISMATCH"))


def _prefill_bench(report: Report, s: Scale, ours, ref) -> None:  # noqa: ANN001
    import torch

    from sluicegate.engine.attention.metadata import AttentionMetadata

    n, length, block = s.prefill_seqs, s.prefill_len, 16
    per_seq = (length + block - 1) // block
    tables = torch.randperm(n * per_seq).view(n, per_seq).tolist()
    meta = AttentionMetadata.build([length] * n, [length] * n, tables, block, torch.device(s.device))
    shape = (n * per_seq, block, s.kv_heads, s.head_dim)
    k_cache = torch.randn(shape, dtype=torch.bfloat16, device=s.device)
    v_cache = torch.randn_like(k_cache)
    q = torch.randn(n * length, s.heads, s.head_dim, dtype=torch.bfloat16, device=s.device)
    scale = s.head_dim ** -0.5
    err = (ours.attend(q, k_cache, v_cache, meta, scale).float()
           - ref.attend(q, k_cache, v_cache, meta, scale).float()).abs().max().item()
    flops = 4 * n * (length * (length + 1) / 2) * s.heads * s.head_dim  # causal QK^T and PV
    t_ours = bench_ms(lambda: ours.attend(q, k_cache, v_cache, meta, scale))
    t_ref = bench_ms(lambda: ref.attend(q, k_cache, v_cache, meta, scale))
    report.add("prefill attention", f"{n} x {length} fresh prompts, bf16",
               f"{flops / t_ours / 1e9:.1f} TFLOP/s ({t_ours:.3f} ms)",
               f"torch {flops / t_ref / 1e9:.1f} TFLOP/s ({t_ref:.3f} ms)",
               f"{t_ref / t_ours:.1f}x; max abs err {err:.1e}" + ("" if err < 5e-2 else " MISMATCH"))
