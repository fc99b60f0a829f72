"""GPU check section 3: the engine against HF transformers (greedy parity, output tok/s at batch
1/32/128 and as a share of the memory-bandwidth roofline), and CUDA graphs against eager decode."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from gpu_check_common import BANDWIDTH_TB_S, Report, Scale, free_memory, run_section, sync


# ---- 3. engine vs HF -------------------------------------------------------------------------
def engine_api() -> tuple[type, type]:
    from sluicegate.engine import LLM, SamplingParams

    return LLM, SamplingParams


def make_llm(model: str | None, dtype: str, s: Scale, max_seqs: int, cuda_graphs: bool = True):  # noqa: ANN201
    LLM, _ = engine_api()
    options: dict[str, object] = dict(dtype=dtype, attention_backend="triton", max_num_seqs=max_seqs,
                                      max_num_batched_tokens=max(2048, s.prompt_len * 8),
                                      cuda_graphs=cuda_graphs, max_model_len=s.max_model_len)
    if s.device == "cpu":
        options["device"] = "cpu"
    try:
        return LLM(model=model, **options)
    except TypeError:  # an option the engine does not know (yet): its defaults
        return LLM(model=model, dtype=dtype, attention_backend="triton")


def graphs_vs_eager(report: Report, s: Scale) -> None:
    """Decode with captured CUDA graphs vs eager launches: same greedy tokens, tok/s ratio."""
    import torch

    _, SamplingParams = engine_api()
    params = SamplingParams(max_tokens=s.max_tokens, temperature=0.0, ignore_eos=True)
    gen = torch.Generator().manual_seed(1)
    results: dict[bool, dict[int, tuple[float, list[list[int]]]]] = {}
    for graphs in (True, False):
        llm = make_llm(None, "bfloat16", s, max_seqs=max(s.gen_batches[:2]), cuda_graphs=graphs)
        captured = llm.engine.runner.decode_graphs is not None
        llm.generate([[100] * s.prompt_len], SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
        results[graphs] = {}
        for batch in s.gen_batches[:2]:
            prompts = torch.randint(100, 40000, (batch, s.prompt_len), generator=gen.manual_seed(batch)).tolist()
            sync()
            start = time.perf_counter()
            outs = llm.generate(prompts, params)
            sync()
            tokens = [o.token_ids for o in outs]
            results[graphs][batch] = (sum(map(len, tokens)) / (time.perf_counter() - start), tokens)
        if graphs and not captured:
            report.add("cuda graphs", "-", note="no graphs were captured (not a CUDA device): eager twice")
        del llm
        free_memory()
    for batch in s.gen_batches[:2]:
        (fast, a), (slow, b) = results[True][batch], results[False][batch]
        same = sum(x == y for x, y in zip(a, b))
        report.add("cuda graphs", f"default model, batch {batch}, {s.prompt_len} in / {s.max_tokens} out, bf16",
                   f"{fast:.0f} tok/s", f"eager {slow:.0f} tok/s",
                   f"{fast / slow:.2f}x; greedy outputs identical {same}/{len(a)}")


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
    from sluicegate.engine.models.default_model import resolve_model_path
    from sluicegate.engine.models.gguf_loader import gguf_hf_dir

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
    run_section(report, "cuda graphs", 30, lambda: graphs_vs_eager(report, s))
    run_section(report, "throughput default", 40, lambda: default_throughput(report, s))
    run_section(report, "throughput 1B", 45, lambda: random_1b_throughput(report, s))
