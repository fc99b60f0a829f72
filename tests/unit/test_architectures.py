"""Every architecture the README names, as a tiny random-weight model built from its config, runs
through the engine and gives transformers' greedy tokens (fp32, prefix cache on, a shared prompt).

SmolLM2 is the Llama architecture with tied embeddings (the real one is covered by
test_engine_parity.py); Llama here has an untied head and llama3 rope scaling so that both
branches are exercised; linear and yarn rope scaling run on Llama and Qwen2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from sluicegate.engine.llm import build_config
from sluicegate.engine.llm_engine import LLMEngine
from sluicegate.engine.params import SamplingParams
from tests.model_factory import make_tiny_hf_model

PROMPTS = [[1, 19556, 905, 28, 339, 1046, 2, 3051, 17, 99, 42], [1, 19556, 905, 28, 7, 7, 300, 12]]
MAX_NEW = 12
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64, "rope_theta": 10000.0}

ARCHITECTURES: dict[str, tuple[str, dict[str, Any]]] = {
    "smollm2": ("llama", {"tie_word_embeddings": True}),
    "llama3": ("llama", {"tie_word_embeddings": False, "rope_parameters": LLAMA3_ROPE}),
    "mistral": ("mistral", {}),
    "mistral-sliding-window": ("mistral", {"sliding_window": 256}),
    "qwen2": ("qwen2", {}),
    # the other rope scalings a config may carry
    "llama-linear-rope": ("llama", {"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}}),
    "qwen2-yarn-rope": ("qwen2", {"rope_parameters": {"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                                                      "original_max_position_embeddings": 128}}),
}


def hf_greedy(folder: Path, prompts: list[list[int]]) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    outs = []
    with torch.inference_mode():
        for ids in prompts:
            gen = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW,
                                 do_sample=False, pad_token_id=0)
            outs.append(gen[0, len(ids):].tolist())
    return outs


def engine_greedy(model: str, prompts: list[list[int]]) -> tuple[LLMEngine, list[list[int]]]:
    engine = LLMEngine(build_config(model, dtype="float32", device="cpu", kv_cache_memory_gb=0.01))
    params = SamplingParams(max_tokens=MAX_NEW, min_tokens=MAX_NEW, temperature=0.0)
    ids = [engine.add_request(p, params) for p in prompts]
    got: dict[str, list[int]] = {i: [] for i in ids}
    while not all(r not in engine.requests for r in ids):
        for out in engine.step():
            got[out.request_id] += out.new_token_ids
    assert not engine.requests
    engine.check_integrity()
    return engine, [got[i] for i in ids]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_tiny_model_matches_transformers(name: str, tmp_path: Path) -> None:
    family, overrides = ARCHITECTURES[name]
    folder = make_tiny_hf_model(tmp_path / name, family, seed=3, **overrides)
    engine, got = engine_greedy(str(folder), PROMPTS)
    assert got == hf_greedy(folder, PROMPTS)
    assert engine.arch.model_type == family
    if name == "mistral-sliding-window":  # attention is always full: served up to the window only
        assert engine.max_model_len == 256
