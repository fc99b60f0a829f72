"""engine/models/int8_weights.py: Q8_0-like weights are kept as their codes exactly (and only
those), the kernel computes x @ W.T of the stored weights, and Linear reads them for one row."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.kernels import cpu_ops
from sluicegate.engine.models.int8_weights import GROUP, INT8_MAX_ROWS, Int8Weight, exact_int8
from sluicegate.engine.models.linear import Linear

needs_kernels = pytest.mark.skipif(not cpu_ops.load(), reason="the CPU kernels cannot be built here")


def q8_0_weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    """A weight as a GGUF Q8_0 tensor dequantizes: per group of 32, codes in -127..127 (one of them
    at +-127, as llama.cpp's quantizer makes the largest) times an fp16 scale, in float32."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(-127, 128, (n, k // GROUP, GROUP), generator=gen).float()
    codes[..., 0] = 127 * torch.where(torch.rand(n, k // GROUP, generator=gen) < 0.5, -1.0, 1.0)
    scale = (torch.rand(n, k // GROUP, 1, generator=gen) * 0.01 + 1e-4).half().float()
    return (codes * scale).reshape(n, k)


def test_a_q8_0_weight_is_kept_exactly() -> None:
    weight = q8_0_weight(96, 128)
    kept = exact_int8(weight)
    assert kept is not None and kept.codes.dtype == torch.int8
    rebuilt = (kept.codes.float().reshape(96, 4, GROUP) * kept.scales[..., None]).reshape(96, 128)
    assert torch.equal(rebuilt, weight)


def test_weights_off_an_8_bit_grid_are_not_kept() -> None:
    assert exact_int8(torch.randn(64, 128)) is None
    on_grid = q8_0_weight(64, 128)
    on_grid[3, 9] += on_grid[3, 9].abs() * 1e-3 + 1e-6  # one weight between two codes
    assert exact_int8(on_grid) is None
    assert exact_int8(q8_0_weight(64, 128)[:, :80]) is None  # K not a multiple of 32


@needs_kernels
@pytest.mark.parametrize("rows", [1, 3, 8])
def test_the_kernel_multiplies_by_the_stored_weights(rows: int) -> None:
    weight = q8_0_weight(200, 192, seed=rows)
    kept = exact_int8(weight)
    assert kept is not None
    x = torch.randn(rows, 192).to(torch.bfloat16)
    want = x.float() @ weight.T  # the stored weights, exactly
    got = kept.matmul(x)
    assert got.dtype == torch.bfloat16 and got.shape == (rows, 200)
    torch.testing.assert_close(got.float(), want, atol=2e-2 * want.abs().max().item(), rtol=1e-2)
    torch.testing.assert_close(kept.matmul(x.float()), want, atol=1e-4, rtol=1e-4)  # fp32 in, fp32 out


@needs_kernels
def test_bad_input_is_refused_with_a_clear_error() -> None:
    kept = exact_int8(q8_0_weight(8, 64))
    assert kept is not None
    with pytest.raises(RuntimeError, match="1 to 8 rows"):
        kept.matmul(torch.zeros(9, 64, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError, match="matching x"):
        kept.matmul(torch.zeros(1, 32, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError, match="scales must be"):
        torch.ops.sluicegate.int8_linear(torch.zeros(1, 64), kept.codes, kept.scales.double())


@needs_kernels
def test_linear_reads_8_bits_for_one_row_only() -> None:
    weight = q8_0_weight(96, 128, seed=4)
    kept = exact_int8(weight)
    assert isinstance(kept, Int8Weight)
    linear, plain = Linear(weight.to(torch.bfloat16), None, kept), Linear(weight.to(torch.bfloat16))
    x = torch.randn(INT8_MAX_ROWS, 128).to(torch.bfloat16)
    assert torch.equal(linear(x), kept.matmul(x))
    x = torch.randn(INT8_MAX_ROWS + 1, 128).to(torch.bfloat16)
    assert torch.equal(linear(x), plain(x))


@needs_kernels
def test_the_default_model_reads_its_8_bit_output_projection_as_stored() -> None:
    """The embedded GGUF stores the tied embedding / output projection in Q8_0."""
    from sluicegate.engine.llm import build_config
    from sluicegate.engine.llm_engine import LLMEngine
    from sluicegate.engine.models.loader import load_model

    loaded = load_model(None, torch.bfloat16, torch.device("cpu"), progress=None)
    model = LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64), loaded=loaded).runner.model
    assert isinstance(model.lm_head.quantized, Int8Weight)
    off = LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64, cpu_kernels=False), loaded=loaded)
    assert off.runner.model.lm_head.quantized is None
