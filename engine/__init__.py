"""sluicegate's engine: paged-KV continuous batching with prefix caching.

Public API: LLM (offline), AsyncEngine (serving), SamplingParams, the config dataclasses.
Imports are lazy so `import engine` costs nothing until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.async_engine import AsyncEngine
    from engine.config import CacheConfig, EngineConfig, GrammarConfig, ModelConfig, SchedulerConfig
    from engine.llm import LLM
    from engine.llm_engine import EngineStats, LLMEngine, QueueFullError
    from engine.outputs import CompletionOutput, RequestOutput, TokenLogprob
    from engine.params import InvalidRequestError, SamplingParams

_WHERE = {
    "AsyncEngine": "engine.async_engine",
    "CacheConfig": "engine.config", "EngineConfig": "engine.config", "GrammarConfig": "engine.config",
    "ModelConfig": "engine.config", "SchedulerConfig": "engine.config",
    "LLM": "engine.llm",
    "EngineStats": "engine.llm_engine", "LLMEngine": "engine.llm_engine", "QueueFullError": "engine.llm_engine",
    "CompletionOutput": "engine.outputs", "RequestOutput": "engine.outputs", "TokenLogprob": "engine.outputs",
    "InvalidRequestError": "engine.params", "SamplingParams": "engine.params",
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
