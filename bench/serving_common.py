"""What the serving and agent benchmarks share: starting each server on the same GGUF file, one
streaming OpenAI-API client for all of them, percentiles, tables, plots.

Servers: sluicegate (always), llama.cpp's llama-server (on PATH or $LLAMA_SERVER) and llama-cpp-python's
server (`import llama_cpp`), each started as a subprocess on a free port when present.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "bench" / "out"
RESULTS_DIR = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_gguf() -> Path:
    sys.path.insert(0, str(ROOT))
    from sluicegate.engine.models.default_model import default_model_path

    return default_model_path()


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes] | None
    model: str = ""
    command: list[str] = field(default_factory=list)  # how it was started, for the results' notes

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _wait(url: str, path: str, proc: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with code {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s")


def _launch(name: str, cmd: list[str], ready_path: str, port: int, log: Path,
            env: dict[str, str] | None = None, cwd: Path = ROOT) -> Server:
    url = f"http://127.0.0.1:{port}"
    print(f"[bench] starting {name}: {' '.join(cmd)}", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)  # bench/out/ is not in a fresh clone
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=cwd, env=env)
    try:
        _wait(url, ready_path, proc)
    except Exception:
        proc.kill()
        raise
    server = Server(name, url, proc, command=[Path(cmd[0]).name, *cmd[1:]])
    server.model = httpx.get(f"{url}/v1/models", timeout=10).json()["data"][0]["id"]
    return server


def start_sluicegate(extra_args: Sequence[str] = (), tree: Path | None = None, name: str = "sluicegate") -> Server:
    """`sluicegate serve` on a free port; from another checkout's source when `tree` is given."""
    port = free_port()
    cmd = [sys.executable, "-m", "sluicegate.gateway.cli", "serve", "--port", str(port), "--log-level", "warning", *extra_args]
    if tree is None:
        return _launch(name, cmd, "/ready", port, OUT_DIR / f"{name}.log")
    # run from that checkout (`-m` puts the working directory first on the path), so its
    # sluicegate/ and the folders beside it are imported, not this one's (see sluicegate/__init__.py)
    tree = tree.resolve()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")])}
    return _launch(name, cmd, "/ready", port, OUT_DIR / f"{name}.log", env, cwd=tree)


def llama_server_binary() -> str | None:
    """LLAMA_SERVER, else the one bench/peers/build_llama_server.sh built, else llama-server on PATH."""
    cache = Path(os.environ.get("SLUICEGATE_CACHE_DIR", Path.home() / ".cache" / "sluicegate"))
    built = cache / "peers" / "bin" / "llama-server"
    return os.environ.get("LLAMA_SERVER") or (str(built) if built.exists() else None) or shutil.which("llama-server")


def llama_server_template_args() -> list[str]:
    """SmolLM2's chat template renders no tools, so llama-server would see a prompt without them and
    answer in text; the ChatML template with tools that build_llama_server.sh keeps gives it the
    same kind of prompt sluicegate renders (hermes-style tools, <tool_call> output)."""
    cache = Path(os.environ.get("SLUICEGATE_CACHE_DIR", Path.home() / ".cache" / "sluicegate"))
    template = cache / "peers" / "templates" / "Qwen-Qwen2.5-7B-Instruct.jinja"
    return ["--chat-template-file", str(template)] if template.exists() else []


def llama_cpp_python_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def start_peers(gguf: Path, slots: int, threads: int, ctx_per_slot: int = 2048,
                tools: bool = False) -> tuple[list[Server], list[str]]:
    """The peers that are installed, started; and a line for each one that is not. llama-server gets one
    slot per concurrent client, each with `ctx_per_slot` tokens of context."""
    servers, absent = [], []
    binary = llama_server_binary()
    if binary:
        port = free_port()
        cmd = [binary, "-m", str(gguf), "-t", str(threads), "-np", str(slots), "-c", str(slots * ctx_per_slot),
               "--port", str(port), "--jinja", "-cb", *(llama_server_template_args() if tools else [])]
        servers.append(_launch("llama-server", cmd, "/health", port, OUT_DIR / "llama-server.log"))
    else:
        absent.append("llama-server: not present (bash bench/peers/build_llama_server.sh, or set LLAMA_SERVER)")
    if llama_cpp_python_present():
        port = free_port()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
               "--n_threads", str(threads), "--chat_format", "chatml", "--n_ctx", "8192"]
        servers.append(_launch("llama-cpp-python", cmd, "/v1/models", port, OUT_DIR / "llama-cpp-python.log"))
    else:
        absent.append("llama-cpp-python: not present (pip install 'llama-cpp-python[server]')")
    return servers, absent


def client_limits(concurrency: int) -> httpx.Limits:
    """A fresh connection per request: llama-server may close a kept-alive connection right after a
    stream ends, and a request sent on it then fails with "Server disconnected". A loopback connect
    costs well under a millisecond, the same for every server."""
    return httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=0)


@dataclass
class StreamResult:
    ttft: float  # seconds to the first streamed chunk (servers send it with the first token)
    gaps: list[float] = field(default_factory=list)  # seconds between later deltas
    completion_tokens: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    content: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str | None = None


async def stream_chat(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> StreamResult:
    """One streamed chat completion, timed at the client, as an agent framework sees it."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first: float | None = None
    last = start
    result = StreamResult(ttft=0.0)
    calls: dict[int, dict[str, Any]] = {}
    deltas = 0
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {r.status_code}: {(await r.aread())[:300]!r}")
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                usage = data["usage"]
                result.completion_tokens = usage.get("completion_tokens", 0)
                result.prompt_tokens = usage.get("prompt_tokens", 0)
                details = usage.get("prompt_tokens_details") or {}
                result.cached_tokens = details.get("cached_tokens", 0) or 0
            for choice in data.get("choices") or []:
                delta = choice.get("delta") or {}
                now = time.perf_counter()
                if first is None:  # the first chunk (the role) is sent with the first token
                    first = last = now
                if delta.get("content") or delta.get("tool_calls"):
                    if deltas:
                        result.gaps.append(now - last)
                    last = now
                    deltas += 1
                result.content += delta.get("content") or ""
                for call in delta.get("tool_calls") or []:
                    entry = calls.setdefault(call.get("index", 0), {"id": call.get("id"), "name": "", "arguments": ""})
                    fn = call.get("function") or {}
                    entry["name"] += fn.get("name") or ""
                    entry["arguments"] += fn.get("arguments") or ""
                result.finish_reason = choice.get("finish_reason") or result.finish_reason
    result.ttft = (first or time.perf_counter()) - start
    result.tool_calls = [calls[i] for i in sorted(calls)]
    if not result.completion_tokens:
        result.completion_tokens = deltas
    return result


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save(name: str, data: Any, table: str, copy_to_results: bool) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / f"{name}.json").write_text(json.dumps(data, indent=2))
    (OUT_DIR / f"{name}.md").write_text(table + "\n")
    if copy_to_results:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        for suffix in (".json", ".md", ".png"):
            src = OUT_DIR / f"{name}{suffix}"
            if src.exists():
                shutil.copy(src, RESULTS_DIR / src.name)


def have_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None
