"""Optional parts of sluicegate and the pip extra that installs each.

The core serves HTTP with llguidance; gRPC, the outlines backend, MCP and the LangChain and
LlamaIndex integrations need their extra. require() fails with the pip command to run, rather
than with the bare ImportError of a module the user never asked for by name.
"""

from __future__ import annotations

import importlib.util


def is_installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def missing_extra_message(extra: str, feature: str) -> str:
    return f"{feature} needs the '{extra}' extra: pip install 'sluicegate[{extra}]'"


def require(module: str, extra: str, feature: str) -> None:
    """Raise ImportError naming `extra` when `module` is not installed."""
    if not is_installed(module):
        raise ImportError(missing_extra_message(extra, feature), name=module)
