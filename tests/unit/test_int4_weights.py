"""engine/models/int4_weights.py: weights stored in 4 bits are packed exactly (and only those), the
kernel computes x @ W.T of those weights, and Linear reads them for a few rows only."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.llm import build_config
from sluicegate.engine.models.int4_weights import (
    GROUP,
    INT4_MAX_ROWS,
    Int4Weight,
    exact_int4,
    int4_available,
)
from sluicegate.engine.models.linear import Linear

pytestmark = pytest.mark.skipif(not int4_available(), reason="this torch has no CPU int4 kernel")


def q4_1_weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """A weight as a GGUF Q4_1 tensor dequantizes: per group of 32, codes 0..15 (both ends used,
    as llama.cpp's quantizer does) times a scale plus an offset, in float32."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (n, k // GROUP, GROUP), generator=gen).float()
    codes[..., 0], codes[..., 1] = 0, 15
    scale = torch.rand(n, k // GROUP, 1, generator=gen) * 0.02 + 0.001
    offset = -scale * 7.5 + torch.randn(n, k // GROUP, 1, generator=gen) * 0.01
    return (codes * scale + offset).reshape(n, k)


def test_a_q4_1_weight_packs_and_multiplies_as_stored() -> None:
    weight = q4_1_weight(96, 128)
    packed = exact_int4(weight)
    assert packed is not None
    x = torch.randn(3, 128).to(torch.bfloat16)
    want = x.float() @ weight.T  # the stored weights, exactly
    got = packed.matmul(x).float()
    assert (got - want).abs().max().item() <= 2e-2 * want.abs().max().item()  # bf16 scale and output rounding


def test_groups_whose_codes_miss_the_ends_of_the_grid_pack_exactly() -> None:
    """Q4_0 (w = (q - 8) * d) and Q4_K groups need not use codes 0 and 15, nor two adjacent codes."""
    weight = q4_1_weight(64, 128, seed=2)
    groups = weight.reshape(64, 4, GROUP)
    groups[0, 0] = torch.tensor([0.0, 2, 5, 12] * 8) * 0.01 - 0.03  # 12 of 15 levels, no neighbours
    groups[1, 2] = torch.arange(GROUP).remainder(9).float() * -0.004  # 9 levels, all below zero
    groups[2, 1] = 0.25  # one value
    packed = exact_int4(weight)
    assert packed is not None
    x = torch.randn(2, 128).to(torch.bfloat16)
    want = x.float() @ weight.T
    assert (packed.matmul(x).float() - want).abs().max().item() <= 2e-2 * want.abs().max().item()


def test_weights_off_a_4_bit_grid_are_not_packed() -> None:
    assert exact_int4(torch.randn(64, 128)) is None
    on_grid = q4_1_weight(64, 128)
    on_grid[5, 7] += 1e-3  # one weight between two codes of its group
    assert exact_int4(on_grid) is None
    assert exact_int4(q4_1_weight(64, 128)[:, :80]) is None  # K not a multiple of 32
    six_bit = torch.randint(0, 64, (64, 128), generator=torch.Generator().manual_seed(3)).float() * 0.01
    assert exact_int4(six_bit) is None  # Q6-like: 64 levels


@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_reads_4_bits_for_a_few_rows_only(with_bias: bool) -> None:
    weight = q4_1_weight(96, 128, seed=1)
    bias = torch.randn(96).to(torch.bfloat16) if with_bias else None
    int4 = exact_int4(weight)
    linear = Linear(weight.to(torch.bfloat16), bias, int4)
    plain = Linear(weight.to(torch.bfloat16), bias)
    for rows in (1, INT4_MAX_ROWS):
        x = torch.randn(rows, 128).to(torch.bfloat16)
        four_bit = int4.matmul(x) if int4 is not None else None
        assert four_bit is not None
        assert torch.equal(linear(x), four_bit if bias is None else four_bit + bias)
    x = torch.randn(INT4_MAX_ROWS + 1, 128).to(torch.bfloat16)
    assert torch.equal(linear(x), plain(x))


def test_the_default_model_decodes_from_its_4_bit_layers() -> None:
    """The embedded GGUF stores every layer's matmuls in Q4_1: all of them get a 4-bit weight in
    bf16 (not the embedding, stored in 8 bits); --no-int4-decode and fp32 keep bf16 / fp32 only."""
    from sluicegate.engine.llm_engine import LLMEngine
    from sluicegate.engine.models.loader import load_model

    loaded = load_model(None, torch.bfloat16, torch.device("cpu"), progress=None)
    model = LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64), loaded=loaded).runner.model
    linears = [lin for layer in model.layers for lin in (layer.qkv, layer.o_proj, layer.gate_up, layer.down)]
    assert all(isinstance(lin.quantized, Int4Weight) for lin in linears)
    assert not isinstance(model.lm_head.quantized, Int4Weight)  # Q8_0: see test_int8_weights.py
    off = LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64, int4_decode=False), loaded=loaded)
    assert all(layer.qkv.quantized is None for layer in off.runner.model.layers)
    fp32 = load_model(None, torch.float32, torch.device("cpu"), progress=None)
    for config in (build_config(None, dtype="bfloat16", num_blocks=64), build_config(None, dtype="float32", num_blocks=64)):
        # an engine whose config says bf16 on fp32 weights (as tests share one fp32 model) computes in fp32
        fp32_model = LLMEngine(config, loaded=fp32).runner.model
        assert all(layer.qkv.quantized is None for layer in fp32_model.layers)
        assert fp32_model.lm_head.quantized is None
