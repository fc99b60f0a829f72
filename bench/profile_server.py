"""Where a live server's time goes: py-spy samples `sluicegate serve` while streams decode.

    python bench/profile_server.py [--threads 1] [--streams 1] [--seconds 15] [--server-args "..."]

Prints the share of samples per thread (the engine's step loop vs the HTTP event loop) and the
hottest lines (the innermost Python frame of each sample). Needs py-spy (the dev extra has it);
sampling another process may need root or ptrace permission.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.serving_common import OUT_DIR, start_sluicegate, stream_chat  # noqa: E402


async def _load(url: str, model: str, streams: int, max_tokens: int) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "Write a long story."}],
            "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    async with httpx.AsyncClient(timeout=600) as http:
        await asyncio.gather(*(stream_chat(http, url, body) for _ in range(streams)))


def summarize(raw: Path, top: int) -> str:
    """py-spy's raw (collapsed) output -> thread shares and the hottest innermost frames."""
    total, threads, leaves = 0, collections.Counter[str](), collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        threads[frames[0].split(":")[-1].strip()] += n
        leaves[frames[-1]] += n
    lines = [f"{n / total:6.1%}  thread {name}" for name, n in threads.most_common()]
    lines += [f"{n / total:6.1%}  {frame}" for frame, n in leaves.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--server-args", default="")
    args = parser.parse_args()
    server = start_sluicegate(["--num-threads", str(args.threads), *args.server_args.split()])
    raw = OUT_DIR / "server_profile.txt"
    try:
        asyncio.run(_load(server.url, server.model, 1, 16))  # warm-up
        assert server.proc is not None
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        spy = subprocess.Popen([py_spy, "record", "-p", str(server.proc.pid), "-d", str(args.seconds), "-r", "200",
                                "-f", "raw", "-o", str(raw), "--nonblocking", "-t"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asyncio.run(_load(server.url, server.model, args.streams, max_tokens=40 * args.seconds))
        spy.wait()
    finally:
        server.stop()
    print(summarize(raw, args.top))


if __name__ == "__main__":
    main()
