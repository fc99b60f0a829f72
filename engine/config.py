"""Frozen configuration dataclasses, composed into one EngineConfig.

Every knob a user can set lives here, so the engine's constructors take one value, not fourteen.
A field declared with option() is also a command-line flag of `sluicegate serve` and `generate`
(gateway/flags.py builds the flags from these declarations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sluicegate.engine.option import option

if TYPE_CHECKING:
    import torch

# Names --dtype accepts; resolve_dtype maps them to torch dtypes.
DTYPE_NAMES = ("auto", "bfloat16", "bf16", "float16", "fp16", "float32", "fp32")


@dataclass(frozen=True)
class ModelConfig:
    """What to load and in which precision."""

    model: str | None = option(
        None, flag="--model", aliases=["-m"],
        help="Hugging Face Hub id (owner/name), HF safetensors folder or GGUF file "
             "(None: the embedded SmolLM2-135M-Instruct)")
    dtype: str = option("auto", choices=DTYPE_NAMES,
                        help="weight and activation precision; auto: bf16 where the device runs it fast, else fp32 "
                             "(fp16 on CUDA without bf16)")
    max_model_len: int | None = option(None, aliases=["-c"],
                                       help="cap on prompt + output tokens (None: the model's own limit)")
    device: str = option("auto", help="auto | cpu | cuda | cuda:N | xpu | mps")
    seed: int = option(0, help="seed of the sampler for requests that bring no seed of their own")
    chat_template: str | None = option(
        None, help="chat template to use instead of the model's: a Jinja file or the template text itself")


@dataclass(frozen=True)
class CacheConfig:
    """Paged KV cache. The pool size comes from kv_cache_memory_gb unless num_blocks forces it."""

    block_size: int = option(16, help="tokens per KV cache block (the unit of prefix sharing)")
    kv_cache_memory_gb: float = option(2.0, help="memory for the paged KV cache, in GB (CPU, and GPUs "
                                                 "when --gpu-memory-utilization is not given)")
    gpu_memory_utilization: float | None = option(
        None, help="on a GPU, the fraction of its free memory (after the weights are loaded) that the KV "
                   "cache takes, e.g. 0.8; the rest stays for activations and CUDA graphs")
    num_blocks: int | None = None
    enable_prefix_caching: bool = option(True, help="reuse the KV cache of prompt prefixes seen before")
    max_pinned_fraction: float = option(
        0.5, flag="--max-pinned-cache-fraction",
        help="share of the KV cache that prefixes pinned with prompt_cache_retention='24h' may keep; "
             "past it the oldest pins become ordinary cache")


@dataclass(frozen=True)
class SchedulerConfig:
    """Token-budget scheduling: decode tokens and prefill chunks share one step's budget."""

    max_num_batched_tokens: int = option(1024, help="tokens one engine step may carry (decodes and prefill chunks)")
    max_num_seqs: int = option(64, help="cap on running sequences")
    max_waiting: int = option(1024, flag="--max-queued-requests",
                              help="queued requests beyond which new ones are refused (HTTP 429 + Retry-After)")
    long_prefill_token_threshold: int = option(
        512, help="tokens of one prompt a single step takes at most, so a long prompt is chunked and "
                  "running decodes keep flowing")


@dataclass(frozen=True)
class GrammarConfig:
    """Structured-output settings: backend name, compile pool and time limit, cache bound."""

    backend: str = option("llguidance", flag="--grammar-backend", choices=["llguidance", "outlines"],
                          help="structured-output backend")
    compile_timeout_s: float = option(10.0, flag="--grammar-compile-timeout",
                                      help="seconds a grammar may take to compile before the request fails with 400")
    num_compile_workers: int = 2
    cache_max_entries: int = 512


@dataclass(frozen=True)
class SpeculativeConfig:
    """Prompt-lookup (n-gram) speculative decoding (engine/speculative.py)."""

    method: str = option("off", flag="--speculative", choices=["off", "ngram"],
                         help="draft tokens by copying what followed the same n-gram earlier in the prompt or "
                              "output, and verify them in one step (same outputs, fewer steps where text is copied)")
    num_tokens: int = option(4, flag="--num-speculative-tokens", help="draft tokens per step at most")
    prompt_lookup_min: int = option(2, help="shortest n-gram matched for a draft")
    prompt_lookup_max: int = option(4, help="longest n-gram matched for a draft (tried first)")


@dataclass(frozen=True)
class KVEventsConfig:
    """Publishing the prefix cache's block events for KV-aware routers (engine/kv_events_publisher.py)."""

    endpoint: str | None = option(
        None, flag="--kv-events-endpoint",
        help="publish prefix-cache events (BlockStored / BlockRemoved, vLLM's kv_events format) on this "
             "ZMQ PUB endpoint, e.g. tcp://*:5557, for llm-d's KV-cache indexer or Dynamo's KV router")
    topic: str = option("kv-events", flag="--kv-events-topic", help="ZMQ topic of the KV events")


@dataclass(frozen=True)
class EngineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    grammar: GrammarConfig = field(default_factory=GrammarConfig)
    speculative: SpeculativeConfig = field(default_factory=SpeculativeConfig)
    kv_events: KVEventsConfig = field(default_factory=KVEventsConfig)
    attention_backend: str = option("auto", choices=["auto", "torch", "triton"], help="attention kernels")
    cuda_graphs: bool = option(True, help="replay captured CUDA graphs for decode steps (CUDA only; "
                                          "--no-cuda-graphs runs them eagerly, for debugging)")
    int4_decode: bool = option(
        True, help="on CPU in bf16, decode steps of up to 4 rows read the layers a GGUF stores in 4 bits "
                   "(Q4_0, Q4_1, Q4_K) as stored, a quarter of the bytes (--no-int4-decode reads their bf16 copy)")
    cpu_kernels: bool = option(
        True, help="on CPU in bf16, decode steps run their norms, rotary embedding with the KV-cache write, SiLU "
                   "gate and paged attention as C++ kernels built once per machine with the system's compiler, "
                   "and one-row steps read a GGUF's Q8_0 layers as stored (--no-cpu-kernels runs torch's ops)")
    num_threads: int | None = option(
        None, help="torch CPU threads (None: serve uses every core it may run on, generate uses torch's default)")
    grammar_fast_forward: bool = option(
        True, help="append tokens a request's grammar forces without sampling and compute them in one step, "
                   "as a prompt chunk is (--no-grammar-fast-forward samples every token)")


def resolve_chat_template(value: str | None) -> str | None:
    """--chat-template's value: the text of the file it names, or the template text itself."""
    if value is None:
        return None
    if "{" in value:  # Jinja: {{ ... }} or {% ... %}; no template file name has these
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise ValueError(f"chat template {value!r} is neither a file nor Jinja template text")
    return path.read_text(encoding="utf-8")


def kv_cache_bytes(cache: CacheConfig, device: torch.device) -> int:
    """Bytes for the KV pool: a share of the GPU's free memory where gpu_memory_utilization is
    set and the device is a GPU, else kv_cache_memory_gb."""
    fraction = cache.gpu_memory_utilization
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {fraction}")
        if device.type == "cuda":
            import torch

            free, _total = torch.cuda.mem_get_info(device)
            return int(free * fraction)
    return int(cache.kv_cache_memory_gb * 2**30)


def resolve_device(name: str) -> torch.device:
    import torch

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
    import torch

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
