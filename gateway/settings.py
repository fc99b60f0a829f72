"""ServeSettings: what `sluicegate serve` is configured with, in one frozen value.

Each field declared with option() is also a `sluicegate serve` flag (gateway/flags.py); the
engine's settings are the nested EngineConfig, whose flags are declared in engine/config.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sluicegate.engine.config import EngineConfig
from sluicegate.engine.option import option
from sluicegate.gateway.cluster.settings import ClusterSettings
from sluicegate.grammars.tool_formats import FORMATS

AUTO_TOOL_FORMAT = "auto"  # --tool-call-format's default: the format the chat template shows


def comma_list(text: str) -> tuple[str, ...]:
    """'a, b,' -> ('a', 'b')"""
    return tuple(item.strip() for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class ServeSettings:
    """What the HTTP gateway and its engine are configured with."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    host: str = option("127.0.0.1", help="address the HTTP server listens on")
    port: int = option(8000, help="HTTP port")
    api_key: str | None = option(None, env="SLUICEGATE_API_KEY",
                                 help="require `Authorization: Bearer KEY` on /v1 (default: $SLUICEGATE_API_KEY)")
    cors_origins: tuple[str, ...] = option((), parse=comma_list,
                                           help="comma-separated allowed CORS origins ('*' for any)")
    served_model_name: str | None = option(None, help="model id clients use (None: the model's name)")
    grpc_port: int | None = option(None, help="also serve gRPC on this port")
    replicas: int | None = option(None, help="serve N engine replicas on Ray Serve behind this one endpoint "
                                             "(needs the 'ray' extra; --num-threads is then per replica)")
    cluster: ClusterSettings = field(default_factory=ClusterSettings)  # --replicas' router and Ray knobs
    mcp_config: str | None = option(None, help="an `mcpServers` JSON file: host these MCP servers' tools")
    max_body_bytes: int = option(16 * 1024 * 1024, help="requests with a larger body get 413 before they are parsed")
    max_n: int = option(16, help="cap on a request's `n` (each choice is one engine request)")
    retry_after_s: int = 1  # Retry-After sent with 429 when the engine's queue is full
    graceful_shutdown_s: float = option(30.0, flag="--graceful-shutdown",
                                        help="seconds to let in-flight requests finish after SIGTERM")
    log_level: str = option("info", choices=["debug", "info", "warning", "error"],
                            help="level of sluicegate's own log messages (stderr)")
    uvicorn_log_level: str = option("info", choices=["trace", "debug", "info", "warning", "error", "critical"],
                                    help="level of the HTTP server's (uvicorn's) log; debug and trace add the access log")
    ssl_keyfile: str | None = option(None, help="serve HTTPS: the TLS private key file (with --ssl-certfile)")
    ssl_certfile: str | None = option(None, help="serve HTTPS: the TLS certificate chain file (with --ssl-keyfile)")
    tool_call_format: str = option(AUTO_TOOL_FORMAT, choices=[AUTO_TOOL_FORMAT, *FORMATS],
                                   help="syntax of tool calls: 'auto' picks it from the chat template "
                                        "(hermes when the template shows none)")

    @property
    def explicit_tool_format(self) -> str | None:
        """The format --tool-call-format names, or None to detect it from the chat template."""
        return None if self.tool_call_format == AUTO_TOOL_FORMAT else self.tool_call_format
