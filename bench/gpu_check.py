"""One prepared GPU check, printed as one markdown table (run it through bench/gpu_check.sh).

Sections, each guarded so one failure or a missing package becomes a table row, never a crash:
  1. kernel tests on the GPU (pytest tests/kernels, native triton, no interpreter)
  2. kernel microbench: paged decode attention GB/s at batch 1/32/128 (and one varlen prefill)
     against the torch reference backend, each output checked against the reference first
  3. engine (if `engine.LLM` works): greedy parity with HF transformers on the default model (fp32,
     token for token; bf16 for information), output tok/s at batch 1/32/128 vs HF and as a share
     of the memory-bandwidth roofline; the same throughput rows for a random-weight 1B Llama.

The whole run keeps to --budget-s (default 285 s): a section that no longer fits is reported as
skipped, and SIGTERM (the shell wrapper's timeout) prints the table gathered so far.
`--dry-run` runs every section on CPU with tiny shapes (TRITON_INTERPRET=1) to test the script.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
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
    llama_1b: dict[str, Any] = field(default_factory=lambda: dict(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=8192, vocab_size=49152))


DRY = Scale(device="cpu", decode_ctx=40, decode_batches=(1, 3), heads=4, kv_heads=2, head_dim=64,
            prefill_seqs=2, prefill_len=24, gen_batches=(1, 2), prompt_len=8, max_tokens=4,
            parity_tokens=4, llama_1b=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
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

    from engine.attention.metadata import AttentionMetadata

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
    from engine.attention.torch_backend import TorchAttentionBackend
    from engine.attention.triton_backend import TritonAttentionBackend

    ours, ref = TritonAttentionBackend(), TorchAttentionBackend()
    for batch in s.decode_batches:
        _decode_bench(report, s, batch, ours, ref)
        free_memory()
    _prefill_bench(report, s, ours, ref)


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

    from engine.attention.metadata import AttentionMetadata

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


# ---- 3. engine vs HF -------------------------------------------------------------------------
def engine_api() -> tuple[type, type]:
    from engine import LLM, SamplingParams

    return LLM, SamplingParams


def make_llm(model: str | None, dtype: str, s: Scale, max_seqs: int):  # noqa: ANN201
    LLM, _ = engine_api()
    options: dict[str, object] = dict(dtype=dtype, attention_backend="triton", max_num_seqs=max_seqs,
                                      max_num_batched_tokens=max(2048, s.prompt_len * 8))
    if s.device == "cpu":
        options["device"] = "cpu"
    try:
        return LLM(model=model, **options)
    except TypeError:  # an option the engine does not know (yet): its defaults
        return LLM(model=model, dtype=dtype, attention_backend="triton")


def hf_load(folder: Path, dtype, device: str):  # noqa: ANN001, ANN201
    import transformers
    from transformers import AutoModelForCausalLM

    version = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    key = "dtype" if version >= (4, 56) else "torch_dtype"  # the older spelling
    model: Any = AutoModelForCausalLM.from_pretrained(folder, **{key: dtype})
    return model.to(device=device, dtype=dtype).eval()


def hf_generate(model, prompts: list[list[int]], max_new: int) -> list[list[int]]:  # noqa: ANN001
    """Greedy, exactly max_new tokens each; prompts of equal length go in one batch (no padding)."""
    import torch

    ids = torch.tensor(prompts, device=model.device)
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                             min_new_tokens=max_new, do_sample=False, pad_token_id=0)
    return out[:, ids.shape[1]:].tolist()


def default_hf_folder() -> Path:
    from engine.models.default_model import resolve_model_path
    from engine.models.gguf_loader import gguf_hf_dir

    return gguf_hf_dir(resolve_model_path(None))


PARITY_PROMPTS = ["The capital of France is", "def fibonacci(n):", "Write a short poem about the sea.",
                  "1, 2, 3, 4, 5,", "Q: What is the boiling point of water in Celsius?\nA:", "Hello"]


def parity(report: Report, s: Scale) -> None:
    import torch
    from transformers import AutoTokenizer

    _, SamplingParams = engine_api()
    folder = default_hf_folder()
    tok = AutoTokenizer.from_pretrained(folder)
    prompts = [tok(p).input_ids for p in PARITY_PROMPTS]
    for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        hf = hf_load(folder, dtype, s.device)
        expected = [hf_generate(hf, [p], s.parity_tokens)[0] for p in prompts]
        del hf
        free_memory()
        llm = make_llm(None, dtype_name, s, max_seqs=len(prompts))
        # min_tokens: like HF's min_new_tokens, EOS is masked until then (ignore_eos alone would
        # still let greedy pick EOS and carry on, where HF picks the runner-up).
        params = SamplingParams(max_tokens=s.parity_tokens, min_tokens=s.parity_tokens, temperature=0.0,
                                ignore_eos=True)
        got = [o.token_ids for o in llm.generate(prompts, params)]
        del llm
        free_memory()
        exact = sum(g == e for g, e in zip(got, expected, strict=True))
        prefix = [next((i for i, (a, b) in enumerate(zip(g, e, strict=False)) if a != b), len(e))
                  for g, e in zip(got, expected, strict=True)]
        note = "must match (fp32)" if dtype == torch.float32 else "bf16 may diverge late (rounding)"
        if exact < len(prompts):
            note += f"; first mismatch at token {prefix}"
        report.add("greedy parity", f"default model, {dtype_name}, {len(prompts)} prompts x "
                   f"{s.parity_tokens} tokens", f"{exact}/{len(prompts)} identical", "HF transformers", note)


def bandwidth_bytes_per_s() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((tb * 1e12 for key, tb in BANDWIDTH_TB_S if key in name), None)


def step_bytes(hf_model, batch: int, avg_ctx: float) -> float:  # noqa: ANN001
    """Bytes one decode step must read: every weight once (an untied embedding table only for its
    rows) plus each sequence's KV cache."""
    cfg = hf_model.config
    params = {id(p): p for p in hf_model.parameters()}.values()
    weights = sum(p.numel() * p.element_size() for p in params)
    embed = hf_model.get_input_embeddings().weight
    if not getattr(cfg, "tie_word_embeddings", False):
        weights -= embed.numel() * embed.element_size()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv = batch * avg_ctx * cfg.num_hidden_layers * 2 * cfg.num_key_value_heads * head_dim * embed.element_size()
    return float(weights + kv)


def throughput(report: Report, s: Scale, label: str, model_arg: str | None, hf_model) -> None:  # noqa: ANN001
    import torch

    _, SamplingParams = engine_api()
    llm = make_llm(model_arg, "bfloat16", s, max_seqs=max(s.gen_batches))
    vocab = hf_model.config.vocab_size
    gen = torch.Generator().manual_seed(0)
    params = SamplingParams(max_tokens=s.max_tokens, temperature=0.0, ignore_eos=True)
    warm = torch.randint(100, vocab - 100, (2, s.prompt_len), generator=gen).tolist()
    llm.generate(warm, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
    hf_generate(hf_model, warm, 4)
    bandwidth = bandwidth_bytes_per_s()
    for batch in s.gen_batches:
        if report.left() < 20:
            report.add("throughput", f"{label}, batch {batch}", note="skipped: time budget")
            continue
        prompts = torch.randint(100, vocab - 100, (batch, s.prompt_len), generator=gen).tolist()
        sync()
        start = time.perf_counter()
        outs = llm.generate(prompts, params)
        sync()
        ours = sum(len(o.token_ids) for o in outs) / (time.perf_counter() - start)
        start = time.perf_counter()
        hf_out = hf_generate(hf_model, prompts, s.max_tokens)
        sync()
        theirs = sum(len(o) for o in hf_out) / (time.perf_counter() - start)
        roof = ""
        if bandwidth:
            limit = batch * bandwidth / step_bytes(hf_model, batch, s.prompt_len + s.max_tokens / 2)
            roof = f"{ours / limit:.0%} of roofline ({limit:.0f} tok/s); HF {theirs / limit:.0%}; "
        report.add("throughput", f"{label}, batch {batch}, {s.prompt_len} in / {s.max_tokens} out, bf16",
                   f"{ours:.0f} tok/s", f"HF {theirs:.0f} tok/s", f"{roof}{ours / theirs:.2f}x HF (incl. prefill)")
    del llm


def default_throughput(report: Report, s: Scale) -> None:
    import torch

    hf = hf_load(default_hf_folder(), torch.bfloat16, s.device)
    throughput(report, s, "default model", None, hf)


def random_1b_throughput(report: Report, s: Scale) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**s.llama_1b, max_position_embeddings=4096, tie_word_embeddings=True)
    with torch.device(s.device):  # random init on the GPU: seconds, not minutes
        model: Any = LlamaForCausalLM(cfg)
    model = model.to(torch.bfloat16).eval()
    folder = Path(tempfile.mkdtemp(prefix="sluicegate-1b-"))
    try:
        model.save_pretrained(folder)
        tokenizer_from = default_hf_folder()  # same 49152-token vocabulary
        for f in tokenizer_from.iterdir():
            if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges")):
                shutil.copy2(f, folder / f.name)
        n = sum(p.numel() for p in model.parameters()) / 1e9
        throughput(report, s, f"random Llama {n:.2f}B", str(folder), model)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def engine_sections(report: Report, s: Scale) -> None:
    try:
        engine_api()
    except Exception as exc:  # noqa: BLE001
        report.add("engine", "-", note=f"skipped: engine not available ({type(exc).__name__}: {exc})")
        return
    run_section(report, "greedy parity", 40, lambda: parity(report, s))
    run_section(report, "throughput default", 40, lambda: default_throughput(report, s))
    run_section(report, "throughput 1B", 45, lambda: random_1b_throughput(report, s))


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
