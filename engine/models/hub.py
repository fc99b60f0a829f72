"""Hugging Face Hub ids (`Qwen/Qwen2.5-0.5B-Instruct`) → a local model folder.

The local HF cache is read first (huggingface_hub's layout, so HF_HOME / HF_HUB_CACHE apply), and
a model already there starts without touching the network. Only when it is missing, and the
machine is not offline (HF_HUB_OFFLINE), are the files downloaded with huggingface_hub.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

# What the engine reads from a repository: config, safetensors, tokenizer files and chat templates.
# PyTorch .bin, GGUF and ONNX copies that many repositories also hold are never fetched.
HUB_FILE_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer.model")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubModelError(FileNotFoundError):
    """A hub id that is neither in the local HF cache nor downloadable."""


def looks_like_hub_id(model: str) -> bool:
    """`owner/name` with nothing that makes it a path (no leading ./ ~ /, no .gguf suffix)."""
    return bool(_HUB_ID.match(model)) and not model.lower().endswith(".gguf")


def resolve_hub_model(repo_id: str, progress: Callable[[str], None] | None = None) -> Path:
    """The snapshot folder of `repo_id`: from the local HF cache, else downloaded when online."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = list(HUB_FILE_PATTERNS)
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise HubModelError(
                f"model {repo_id!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
                f"and HF_HUB_OFFLINE is set, so it cannot be downloaded; download it on a machine "
                f"with network access (`hf download {repo_id}`) or pass a local folder or .gguf file"
            ) from None
        if progress is not None:
            progress(f"downloading {repo_id} from the Hugging Face Hub into {constants.HF_HUB_CACHE}")
        try:
            folder = snapshot_download(repo_id, allow_patterns=patterns)
        except OSError as exc:  # no network, unknown or gated repository, disk full
            raise HubModelError(
                f"model {repo_id!r} is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
                f"and could not be downloaded: {exc}"
            ) from exc
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise HubModelError(
            f"{repo_id}: the repository has no config.json (a GGUF-only repository? download its "
            f".gguf file and pass that path)"
        )
    return path
