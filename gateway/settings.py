"""ServeSettings: every `sluicegate serve` flag in one frozen value (the CLI builds it, the app reads it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServeSettings:
    """What the HTTP gateway and its engine are configured with.

    model: None serves the embedded default model; else an HF safetensors folder or a .gguf file.
    served_model_name: the id /v1/models lists and requests must name (default: the engine's name).
    api_key: when set, /v1/* requires `Authorization: Bearer <api_key>` (compared in constant time).
    max_body_bytes: requests with a larger body get 413 before they are parsed.
    grpc_port: when set, the gRPC server (gateway/grpc_server.py) is started beside HTTP.
    """

    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str = "auto"
    device: str = "auto"
    max_model_len: int | None = None
    kv_cache_memory_gb: float = 2.0
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 1024
    max_queued_requests: int = 1024
    api_key: str | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    grammar_backend: str = "llguidance"
    grammar_compile_timeout_s: float = 10.0
    served_model_name: str | None = None
    grpc_port: int | None = None
    mcp_config: str | None = None  # an `mcpServers` JSON file: MCP servers whose tools the gateway hosts
    max_body_bytes: int = 16 * 1024 * 1024
    max_n: int = 16  # cap on `n` (each choice is one engine request)
    retry_after_s: int = 1  # Retry-After sent with 429 when the engine's queue is full
    graceful_shutdown_s: float = 30.0
    log_level: str = "info"
    num_threads: int | None = None
    attention_backend: str = "auto"
    cuda_graphs: bool = True
    grammar_fast_forward: bool = True
    max_pinned_fraction: float = 0.5
