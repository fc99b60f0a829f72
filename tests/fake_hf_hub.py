"""A stand-in for the Hugging Face Hub on 127.0.0.1, serving one folder as a model repository.

Enough of the Hub's HTTP API for huggingface_hub's snapshot_download (repo info, the file tree,
HEAD + GET of each file), so the download path runs for real without reaching the network.
Every requested path is recorded, so a test can check which files were fetched.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def _handler(repo_id: str, folder: Path, requested: list[str]) -> type[BaseHTTPRequestHandler]:
    files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}

    def etag(name: str) -> str:
        return hashlib.sha1(files[name].read_bytes()).hexdigest()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet test output
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str], with_body: bool = True) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def _json(self, value: object) -> None:
            self._send(200, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _route(self, with_body: bool) -> None:
            path = unquote(urlparse(self.path).path)
            requested.append(f"{self.command} {path}")
            if path == f"/api/models/{repo_id}/revision/main":
                return self._json({"id": repo_id, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]})
            if path.startswith(f"/api/models/{repo_id}/tree/{COMMIT}"):
                return self._json([{"type": "file", "path": n, "size": p.stat().st_size, "oid": etag(n)}
                                   for n, p in files.items()])
            prefix = f"/{repo_id}/resolve/{COMMIT}/"
            if path.startswith(prefix) and path[len(prefix):] in files:
                name = path[len(prefix):]
                return self._send(200, files[name].read_bytes(), {
                    "X-Repo-Commit": COMMIT, "ETag": f'"{etag(name)}"',
                    "Content-Type": "application/octet-stream"}, with_body)
            return self._send(404, b'{"error": "not found"}', {"X-Error-Code": "EntryNotFound"}, with_body)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._route(with_body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._route(with_body=False)

    return Handler


@contextmanager
def fake_hub(repo_id: str, folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(endpoint URL for HF_ENDPOINT, the list of requests it receives) while the server runs."""
    requested: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(repo_id, folder, requested))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
