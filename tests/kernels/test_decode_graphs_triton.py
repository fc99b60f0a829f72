"""The engine with the triton backend: decode replayed from the static graph buffers (EagerReplay on
CPU, a real CUDA graph on a GPU) gives the eager path's tokens, on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sluicegate.engine.decode_graphs import capture_eager
from sluicegate.engine.llm import build_config
from sluicegate.engine.llm_engine import LLMEngine
from sluicegate.engine.params import SamplingParams
from tests.kernels.runtime import ON_GPU
from tests.model_factory import make_tiny_hf_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf_model(tmp_path_factory.mktemp("tiny"), "llama", seed=3)


def _generate(engine: LLMEngine, prompts: list[list[int]], max_tokens: list[int]) -> list[list[int]]:
    ids = [engine.add_request(p, SamplingParams(max_tokens=m, temperature=0.0, ignore_eos=True))
           for p, m in zip(prompts, max_tokens)]
    got: dict[str, list[int]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            got[out.request_id] += out.new_token_ids
    engine.check_integrity()
    return [got[i] for i in ids]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_triton_decode_graphs_match_eager(tiny_model: Path, dtype: str) -> None:
    device = "cuda" if ON_GPU else "cpu"
    options = dict(dtype=dtype, device=device, attention_backend="triton", max_model_len=96,
                   max_num_seqs=4, num_blocks=48, block_size=16)
    eager = LLMEngine(build_config(str(tiny_model), **options, cuda_graphs=False))
    graphs = LLMEngine(build_config(str(tiny_model), **options))
    if graphs.runner.decode_graphs is None:  # CPU: no CUDA graphs; replay eagerly from static buffers
        graphs.runner.capture_decode_graphs(4, graphs.max_model_len, capture=capture_eager)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 49000, (n,), generator=gen).tolist() for n in (5, 17, 33)]
    max_tokens = [20, 6, 12]  # crosses a block boundary; the batch shrinks from 3 rows to 1
    expected = _generate(eager, prompts, max_tokens)
    assert _generate(graphs, prompts, max_tokens) == expected
    runner = graphs.runner.decode_graphs
    assert runner is not None and runner.num_replays >= 15
