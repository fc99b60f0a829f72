"""`sluicegate serve` as users start it: HTTPS with their own certificate, their own chat template,
and a cap on `n`, each taken from the command line by the real process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl for a test certificate")

# Renders the same short text whatever the messages, so prompt_tokens shows which template ran.
FIXED_TEMPLATE = "{{ 'Reply:' }}"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return key, cert


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_https_chat_template_and_max_n_from_the_command_line(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    template = tmp_path / "fixed.jinja"
    template.write_text(FIXED_TEMPLATE)
    port = _free_port()
    log = (tmp_path / "serve.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "sluicegate.gateway.cli", "serve", "--port", str(port),
                             "--kv-cache-memory-gb", "0.1", "--ssl-keyfile", str(key), "--ssl-certfile", str(cert),
                             "--chat-template", str(template), "--max-n", "2", "--served-model-name", "smol",
                             "--uvicorn-log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(verify=str(cert)) as http:
            _wait_ready_https(http, url, proc)
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", http_client=http)
            short, long = ([{"role": "user", "content": text}] for text in ("hi", "tell me " * 40))
            usages = [client.chat.completions.create(model="smol", messages=m, max_tokens=1).usage for m in (short, long)]
            assert usages[0] is not None and usages[1] is not None
            assert usages[0].prompt_tokens == usages[1].prompt_tokens < 8  # the file's template, not the model's
            with pytest.raises(openai.BadRequestError, match="n"):
                client.chat.completions.create(model="smol", messages=short, max_tokens=1, n=3)
            with pytest.raises(httpx.TransportError):  # plain HTTP is not served on an HTTPS port
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).raise_for_status()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.seek(0)
        output = log.read()
    assert f"ready: serving smol at https://127.0.0.1:{port}/v1" in output, output


def _wait_ready_https(http: httpx.Client, url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if http.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} was not ready within {timeout}s")
