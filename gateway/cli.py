"""`sluicegate serve` (the OpenAI-compatible HTTP server) and `sluicegate generate "prompt"` (offline)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from sluicegate import __version__
from sluicegate.engine.config import EngineConfig
from sluicegate.extras import is_installed, missing_extra_message
from sluicegate.gateway.flags import add_flags, from_args
from sluicegate.gateway.settings import ServeSettings

_HELP_FORMAT = argparse.ArgumentDefaultsHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sluicegate", description="Inference gateway for AI agents.",
                                     formatter_class=_HELP_FORMAT)
    parser.add_argument("--version", action="version", version=f"sluicegate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the OpenAI-compatible HTTP API", formatter_class=_HELP_FORMAT,
                           description="Serve the OpenAI-compatible HTTP API (and gRPC, MCP where asked).")
    serve.add_argument("model_arg", nargs="?", metavar="MODEL", default=None,
                       help="the model to serve, as --model (Hub id, safetensors folder or GGUF file)")
    add_flags(serve, ServeSettings)

    gen = sub.add_parser("generate", help="generate offline, without a server", formatter_class=_HELP_FORMAT,
                         description="Generate one completion offline, without a server.")
    gen.add_argument("prompt", help="the user message (or, with --raw, the text to complete)")
    add_flags(gen, EngineConfig)
    gen.add_argument("--max-tokens", type=int, default=256, help="tokens to generate at most")
    gen.add_argument("--temperature", type=float, default=0.0, help="sampling temperature (0: greedy)")
    gen.add_argument("--raw", action="store_true", help="no chat template: complete the prompt as text")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; `serve MODEL` and `serve --model MODEL` are the same."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and (vars(args)["ssl_keyfile"] is None) != (vars(args)["ssl_certfile"] is None):
        parser.error("HTTPS needs both --ssl-keyfile and --ssl-certfile")
    _check_extras(parser, args)
    if args.command == "serve" and args.model_arg is not None:
        flagged = vars(args)["engine.model.model"]
        if flagged is not None and flagged != args.model_arg:
            parser.error(f"two models given: {args.model_arg!r} and --model {flagged!r}")
        setattr(args, "engine.model.model", args.model_arg)
    return args


def _check_extras(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fail at once, with the pip command, when a flag asks for a part that is not installed."""
    engine = engine_config_from_args(args) if args.command == "generate" else settings_from_args(args).engine
    wanted = [(engine.grammar.backend == "outlines", "outlines_core", "outlines", "--grammar-backend outlines")]
    if args.command == "serve":
        settings = settings_from_args(args)
        wanted += [(settings.grpc_port is not None, "grpc", "grpc", "--grpc-port"),
                   (settings.mcp_config is not None, "mcp", "mcp", "--mcp-config"),
                   (settings.replicas is not None, "ray", "ray", "--replicas")]
        if settings.replicas is not None and (settings.replicas < 1 or settings.grpc_port or settings.mcp_config):
            parser.error("--replicas takes N >= 1 and serves HTTP only (no --grpc-port or --mcp-config yet)")
    for asked, module, extra, flag in wanted:
        if asked and not is_installed(module):
            parser.error(missing_extra_message(extra, flag))


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return from_args(ServeSettings, args)


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    """The EngineConfig of `generate`'s flags."""
    return from_args(EngineConfig, args)


def configure_logging(level: str) -> None:
    """sluicegate's loggers write to stderr at `level` (uvicorn configures its own)."""
    logger = logging.getLogger("sluicegate")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def serve(settings: ServeSettings) -> int:
    configure_logging(settings.log_level)
    if settings.replicas is not None:
        from sluicegate.gateway.cluster.launch import serve_replicas

        return serve_replicas(settings)
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

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.uvicorn_log_level,
                            access_log=settings.uvicorn_log_level in ("debug", "trace"),
                            ssl_keyfile=settings.ssl_keyfile, ssl_certfile=settings.ssl_certfile,
                            timeout_graceful_shutdown=int(settings.graceful_shutdown_s), lifespan="on")
    Server(config).run()
    return 1 if state.load_error is not None else 0


def generate(args: argparse.Namespace) -> int:
    from sluicegate.engine.llm import LLM
    from sluicegate.engine.params import SamplingParams

    llm = LLM(config=engine_config_from_args(args))
    prompt: Any = args.prompt
    template = llm.engine.chat_template
    if not args.raw and template:
        text = llm.tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], chat_template=template,
                                                 tokenize=False, add_generation_prompt=True)
        prompt = list(llm.tokenizer(str(text), add_special_tokens=False)["input_ids"])
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
    [out] = llm.generate([prompt], params)
    print(out.text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        return serve(settings_from_args(args))
    return generate(args)


if __name__ == "__main__":
    sys.exit(main())
