"""Greedy outputs equal HF transformers' token for token (default model, fp32), with prefix cache
on and off, forced chunked prefill, and memory pressure that forces preemption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sluicegate.engine.params import SamplingParams

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Write a short poem about the sea.",
    "1, 2, 3, 4, 5,",
    "Translate to French: I like apples and oranges.",
    "Q: What is the boiling point of water in Celsius?\nA:",
    "Once upon a time in a small village there lived an old clockmaker who " * 6,  # ~90 tokens
    "List three colors:",
    "import numpy as np\nimport torch\n\n# A function that computes the softmax of a vector\n" * 8,  # ~170 tokens
    "Hello",
]
MAX_NEW = 24


@pytest.fixture(scope="module")
def hf_reference(default_hf_folder: Path) -> list[list[int]]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_hf_folder)
    model = AutoModelForCausalLM.from_pretrained(default_hf_folder, dtype=torch.float32)
    model.eval()
    outs = []
    with torch.inference_mode():
        for prompt in PROMPTS:
            ids = tok(prompt, return_tensors="pt").input_ids
            gen = model.generate(ids, max_new_tokens=MAX_NEW, do_sample=False, min_new_tokens=MAX_NEW)
            outs.append(gen[0, ids.shape[1]:].tolist())
    return outs


def _run(engine, prompts: list[str]) -> list[list[int]]:  # noqa: ANN001
    tok = engine.tokenizer
    params = SamplingParams(max_tokens=MAX_NEW, min_tokens=MAX_NEW, temperature=0.0)
    ids = [engine.add_request(tok(p).input_ids, params) for p in prompts]
    got: dict[str, list[int]] = {i: [] for i in ids}
    done: set[str] = set()
    while len(done) < len(ids):
        for out in engine.step():
            got[out.request_id] += out.new_token_ids
            if out.finished:
                done.add(out.request_id)
    return [got[i] for i in ids]


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    pytest.param({}, id="prefix-cache-on"),
    pytest.param({"enable_prefix_caching": False}, id="prefix-cache-off"),
    pytest.param({"max_num_batched_tokens": 64, "long_prefill_token_threshold": 24}, id="chunked-prefill"),
    pytest.param({"num_blocks": 26, "block_size": 16}, id="preemption"),
])
def test_greedy_matches_hf(make_engine, hf_reference, options: dict) -> None:  # noqa: ANN001
    engine = make_engine(**options)
    got = _run(engine, PROMPTS)
    for prompt, mine, ref in zip(PROMPTS, got, hf_reference):
        assert mine == ref, f"mismatch for {prompt[:40]!r}"
    if "num_blocks" in options:
        assert engine.stats().num_preemptions_total > 0, "the memory-pressure case must preempt"
    # Second pass: the prompts now hit the prefix cache and must give the same tokens.
    again = _run(engine, PROMPTS)
    assert again == got
