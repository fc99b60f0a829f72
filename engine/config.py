"""Frozen configuration dataclasses, composed into one EngineConfig.

Every knob a user can set lives here, so the engine's constructors take one value, not fourteen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class ModelConfig:
    """What to load and in which precision.

    model: None for the embedded SmolLM2-135M-Instruct GGUF, else a Hugging Face Hub id, an HF
    safetensors folder or a GGUF file. dtype: "auto" (bf16 where the device has it, else fp32), "bfloat16", "float16",
    "float32". max_model_len: cap on prompt + output tokens (None: the model's own limit).
    """

    model: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    device: str = "auto"
    seed: int = 0


@dataclass(frozen=True)
class CacheConfig:
    """Paged KV cache. The pool size comes from kv_cache_memory_gb unless num_blocks forces it.

    max_pinned_fraction: at most this share of the pool stays protected for pinned prefixes
    (requests with prompt_cache_retention="24h"); past it the oldest pins become ordinary cache.
    """

    block_size: int = 16
    kv_cache_memory_gb: float = 2.0
    num_blocks: int | None = None
    enable_prefix_caching: bool = True
    max_pinned_fraction: float = 0.5


@dataclass(frozen=True)
class SchedulerConfig:
    """Token-budget scheduling.

    max_num_batched_tokens: tokens one forward step may carry (decode and prefill chunks share it).
    max_num_seqs: cap on running sequences. max_waiting: queued requests before add_request refuses.
    long_prefill_token_threshold: a single prompt takes at most this many tokens of one step, so a
    long prompt is chunked and running decodes keep flowing.
    """

    max_num_batched_tokens: int = 1024
    max_num_seqs: int = 64
    max_waiting: int = 1024
    long_prefill_token_threshold: int = 512


@dataclass(frozen=True)
class GrammarConfig:
    """Structured-output settings: backend name, compile pool and time limit, cache bound."""

    backend: str = "llguidance"
    compile_timeout_s: float = 10.0
    num_compile_workers: int = 2
    cache_max_entries: int = 512


@dataclass(frozen=True)
class EngineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grammar: GrammarConfig = field(default_factory=GrammarConfig)
    attention_backend: str = "auto"  # "auto" | "torch" | "triton"
    # Capture decode steps as CUDA graphs (CUDA only; ignored elsewhere). False = eager, for debugging.
    cuda_graphs: bool = True
    num_threads: int | None = None  # torch intra-op threads on CPU (None: torch's default)
    # Tokens a request's grammar forces (a tool call's `{"name": "`, required keys in order) are
    # appended without sampling and computed together in the next step, as a prompt chunk is.
    grammar_fast_forward: bool = True


def resolve_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.device("xpu")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True where bf16 matmuls run natively (AVX512-BF16 / AMX), where they are ~2x fp32."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    table = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
             "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
    if name != "auto":
        if name not in table:
            raise ValueError(f"dtype must be one of auto, {', '.join(table)}; got {name!r}")
        return table[name]
    if device.type == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16
