"""`sluicegate serve` (the OpenAI-compatible HTTP server) and `sluicegate generate "prompt"` (offline)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from sluicegate.gateway.settings import ServeSettings

_DEFAULTS = ServeSettings()


def _add_engine_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="Hugging Face Hub id (owner/name), HF safetensors folder or GGUF file "
                        "(default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--dtype", default=_DEFAULTS.dtype, choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--device", default=_DEFAULTS.device, help="auto | cpu | cuda | ...")
    p.add_argument("--max-model-len", type=int, default=None, help="cap on prompt + output tokens")
    p.add_argument("--kv-cache-memory-gb", type=float, default=_DEFAULTS.kv_cache_memory_gb,
                   help="memory for the paged KV cache")
    p.add_argument("--max-num-seqs", type=int, default=_DEFAULTS.max_num_seqs, help="max running sequences")
    p.add_argument("--max-num-batched-tokens", type=int, default=_DEFAULTS.max_num_batched_tokens,
                   help="token budget of one engine step")
    p.add_argument("--grammar-backend", default=_DEFAULTS.grammar_backend, choices=["llguidance", "outlines"])
    p.add_argument("--grammar-compile-timeout", type=float, default=_DEFAULTS.grammar_compile_timeout_s,
                   help="seconds a grammar may take to compile before the request fails with 400")
    p.add_argument("--attention-backend", default=_DEFAULTS.attention_backend, choices=["auto", "torch", "triton"])
    p.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                   help="run decode steps eagerly on CUDA (default: replay captured CUDA graphs)")
    p.add_argument("--num-threads", type=int, default=None,
                   help="torch CPU threads (default: serve leaves one core to the HTTP server, generate uses torch's)")
    p.add_argument("--no-grammar-fast-forward", dest="grammar_fast_forward", action="store_false",
                   help="sample every token, also those a request's grammar forces (default: append forced "
                        "tokens without sampling and compute them in one step)")
    p.add_argument("--max-pinned-cache-fraction", type=float, default=_DEFAULTS.max_pinned_fraction,
                   help="share of the KV cache that prefixes pinned with prompt_cache_retention='24h' may keep")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluicegate", description="Inference gateway for AI agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the OpenAI-compatible HTTP API")
    _add_engine_flags(serve)
    serve.add_argument("--host", default=_DEFAULTS.host)
    serve.add_argument("--port", type=int, default=_DEFAULTS.port)
    serve.add_argument("--max-queued-requests", type=int, default=_DEFAULTS.max_queued_requests,
                       help="queued requests beyond which new ones get 429 + Retry-After")
    serve.add_argument("--api-key", default=os.environ.get("SLUICEGATE_API_KEY"),
                       help="require `Authorization: Bearer KEY` on /v1 (default: $SLUICEGATE_API_KEY)")
    serve.add_argument("--cors-origins", default="", help="comma-separated allowed CORS origins ('*' for any)")
    serve.add_argument("--served-model-name", default=None, help="model id clients use (default: the model's name)")
    serve.add_argument("--grpc-port", type=int, default=None, help="also serve gRPC on this port")
    serve.add_argument("--mcp-config", default=None, help="mcpServers JSON: host these MCP servers' tools")
    serve.add_argument("--max-body-bytes", type=int, default=_DEFAULTS.max_body_bytes)
    serve.add_argument("--graceful-shutdown", type=float, default=_DEFAULTS.graceful_shutdown_s,
                       help="seconds to let in-flight requests finish after SIGTERM")
    serve.add_argument("--log-level", default=_DEFAULTS.log_level, choices=["debug", "info", "warning", "error"])

    gen = sub.add_parser("generate", help="generate offline, without a server")
    gen.add_argument("prompt")
    _add_engine_flags(gen)
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--raw", action="store_true", help="no chat template: complete the prompt as text")
    return parser


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    origins = tuple(o.strip() for o in args.cors_origins.split(",") if o.strip())
    return ServeSettings(
        model=args.model, host=args.host, port=args.port, dtype=args.dtype, device=args.device,
        max_model_len=args.max_model_len, kv_cache_memory_gb=args.kv_cache_memory_gb,
        max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
        max_queued_requests=args.max_queued_requests, api_key=args.api_key or None, cors_origins=origins,
        grammar_backend=args.grammar_backend, grammar_compile_timeout_s=args.grammar_compile_timeout,
        served_model_name=args.served_model_name, grpc_port=args.grpc_port, max_body_bytes=args.max_body_bytes,
        mcp_config=args.mcp_config,
        graceful_shutdown_s=args.graceful_shutdown, log_level=args.log_level, num_threads=args.num_threads,
        attention_backend=args.attention_backend, cuda_graphs=args.cuda_graphs,
        grammar_fast_forward=args.grammar_fast_forward, max_pinned_fraction=args.max_pinned_cache_fraction)


def serve(settings: ServeSettings) -> int:
    import uvicorn

    from sluicegate.gateway.app import create_app

    app = create_app(settings)
    state = app.state.sg

    class Server(uvicorn.Server):
        """uvicorn's server, plus: readiness off (new requests 503) the moment SIGTERM/SIGINT
        arrives, and exit when the model fails to load."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            state.draining = True
            if not self.should_exit:
                print(f"sluicegate: {signal.Signals(sig).name}: draining in-flight requests", file=sys.stderr)
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if state.load_error is not None:
                return True
            return await super().on_tick(counter)

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=settings.log_level == "debug",
                            timeout_graceful_shutdown=int(settings.graceful_shutdown_s), lifespan="on")
    Server(config).run()
    return 1 if state.load_error is not None else 0


def generate(args: argparse.Namespace) -> int:
    from sluicegate.engine.llm import LLM
    from sluicegate.engine.params import SamplingParams

    llm = LLM(args.model, dtype=args.dtype, device=args.device, max_model_len=args.max_model_len,
              kv_cache_memory_gb=args.kv_cache_memory_gb, grammar_backend=args.grammar_backend,
              attention_backend=args.attention_backend, num_threads=args.num_threads,
              cuda_graphs=args.cuda_graphs, grammar_fast_forward=args.grammar_fast_forward,
              max_pinned_fraction=args.max_pinned_cache_fraction)
    prompt: Any = args.prompt
    template = llm.engine.chat_template
    if not args.raw and template:
        text = llm.tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], chat_template=template,
                                                 tokenize=False, add_generation_prompt=True)
        prompt = list(llm.tokenizer(str(text), add_special_tokens=False)["input_ids"])
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)
    [out] = llm.generate([prompt], params)
    print(out.text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(settings_from_args(args))
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
