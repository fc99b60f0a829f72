"""sluicegate's engine: paged-KV continuous batching with prefix caching.

Public API: LLM (offline), AsyncEngine (serving), SamplingParams, the config dataclasses.
Imports are lazy so `import sluicegate.engine` costs nothing until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluicegate.engine.async_engine import AsyncEngine
    from sluicegate.engine.config import (
        CacheConfig,
        EngineConfig,
        GrammarConfig,
        ModelConfig,
        SchedulerConfig,
    )
    from sluicegate.engine.llm import LLM
    from sluicegate.engine.llm_engine import EngineStats, LLMEngine, QueueFullError
    from sluicegate.engine.outputs import CompletionOutput, RequestOutput, TokenLogprob
    from sluicegate.engine.params import InvalidRequestError, SamplingParams

_WHERE = {
    "AsyncEngine": "sluicegate.engine.async_engine",
    "CacheConfig": "sluicegate.engine.config", "EngineConfig": "sluicegate.engine.config", "GrammarConfig": "sluicegate.engine.config",
    "ModelConfig": "sluicegate.engine.config", "SchedulerConfig": "sluicegate.engine.config",
    "LLM": "sluicegate.engine.llm",
    "EngineStats": "sluicegate.engine.llm_engine", "LLMEngine": "sluicegate.engine.llm_engine", "QueueFullError": "sluicegate.engine.llm_engine",
    "CompletionOutput": "sluicegate.engine.outputs", "RequestOutput": "sluicegate.engine.outputs", "TokenLogprob": "sluicegate.engine.outputs",
    "InvalidRequestError": "sluicegate.engine.params", "SamplingParams": "sluicegate.engine.params",
}
__all__ = [  # noqa: F822 - resolved lazily by __getattr__
    "AsyncEngine", "CacheConfig", "CompletionOutput", "EngineConfig", "EngineStats", "GrammarConfig", "InvalidRequestError",
    "LLM", "LLMEngine", "ModelConfig", "QueueFullError", "RequestOutput", "SamplingParams", "SchedulerConfig",
    "TokenLogprob",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
