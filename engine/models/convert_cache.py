"""On-disk cache of GGUF files converted to HF folders (tokenizer files, config.json, safetensors).

One folder per GGUF file, keyed by its absolute path, size and mtime, so an edited or replaced
file is converted again. Every folder is written into a temp dir beside it and renamed into
place, so a start killed half-way never leaves a folder that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Bump when the converted layout changes, so old caches are not read with new rules.
CONVERSION_VERSION = 1


def cache_root() -> Path:
    """SLUICEGATE_CACHE_DIR, else ~/.cache/sluicegate."""
    env = os.environ.get("SLUICEGATE_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sluicegate"


def cache_dir_for(model_file: Path) -> Path:
    """The cache folder of one model file: <root>/<stem>-<hash of path, size, mtime, version>."""
    path = model_file.resolve()
    stat = path.stat()
    ident = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|v{CONVERSION_VERSION}"
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    return cache_root() / f"{path.stem}-{key}"


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty temp dir; on success rename it to `target`, on error delete it.

    If another process finished the same target first, ours is dropped and theirs is kept
    (both hold the same conversion).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
