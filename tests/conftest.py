"""Shared fixtures: the default model loaded once per session, engines checked for leaks after use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def default_model_fp32():  # noqa: ANN201 - LoadedModel
    from sluicegate.engine.models.loader import load_model

    return load_model(None, torch.float32, torch.device("cpu"), progress=None)


@pytest.fixture(scope="session")
def default_hf_folder() -> Path:
    """The converted HF folder of the default GGUF (what transformers loads as the reference)."""
    from sluicegate.engine.models.default_model import default_model_path
    from sluicegate.engine.models.gguf_loader import gguf_hf_dir

    return gguf_hf_dir(default_model_path(), None)


@pytest.fixture
def make_engine(default_model_fp32) -> Iterator[Callable[..., object]]:  # noqa: ANN001
    """Build LLMEngines on the shared fp32 default model; after the test every one must pass the
    integrity check (no leaked request or KV block) once its requests are done."""
    from sluicegate.engine.llm import build_config
    from sluicegate.engine.llm_engine import LLMEngine

    made: list[LLMEngine] = []

    def factory(**options: object) -> LLMEngine:
        options.setdefault("dtype", "float32")
        options.setdefault("kv_cache_memory_gb", 0.125)
        engine = LLMEngine(build_config(None, **options), loaded=default_model_fp32)
        made.append(engine)
        return engine

    yield factory
    for engine in made:
        assert not engine.requests, f"requests left in the engine: {list(engine.requests)}"
        engine.check_integrity()
