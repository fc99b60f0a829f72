"""The decode step's fast paths give the same numbers as the plain formulas they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine.models.linear import Linear
from engine.models.rope import apply_rope, apply_rope_rolled, rope_cache, signed_sin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rolled_rope_is_bit_identical_to_rotate_half(dtype: torch.dtype) -> None:
    cos, sin = rope_cache(64, 10000.0, None, 512, torch.device("cpu"), dtype)
    positions = torch.tensor([0, 5, 77, 511])
    qkv = torch.randn(4, (9 + 3 + 3) * 64, generator=torch.Generator().manual_seed(0)).to(dtype)
    qk = qkv[:, : 12 * 64].view(4, 12, 64)  # strided view, as in the model
    got = apply_rope_rolled(qk, cos[positions].unsqueeze(1), signed_sin(sin)[positions].unsqueeze(1))
    want = apply_rope(qk, cos[positions], sin[positions])
    assert torch.equal(got, want)


@pytest.mark.parametrize("rows", [1, 3, 32, 130])
@pytest.mark.parametrize("bias", [False, True])
def test_packed_linear_matches_f_linear(rows: int, bias: bool) -> None:
    g = torch.Generator().manual_seed(rows)
    w = torch.randn(96, 64, generator=g).bfloat16()
    b = torch.randn(96, generator=g).bfloat16() if bias else None
    x = torch.randn(rows, 64, generator=g).bfloat16()
    with torch.inference_mode():
        got = Linear(w, b, pack=True)(x)  # the opt-in packed path (small rows) and F.linear
    # bf16 on a CPU with oneDNN: the same kernel either way, so the same bits
    assert torch.equal(got, F.linear(x, w, b))


def test_linear_keeps_plain_weight_where_it_cannot_pack() -> None:
    w = torch.randn(8, 4)
    layer = Linear(w)
    assert layer.packed is None and layer.weight is w
    x = torch.randn(2, 4)
    assert torch.equal(layer(x), F.linear(x, w))


def _plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q [H, D], k/v [L, kv, D] -> [H, D] in fp32, GQA by repeating kv heads."""
    group = q.shape[0] // k.shape[1]
    k, v = k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1)  # [L, H, D]
    probs = (torch.einsum("hd,lhd->hl", q.float(), k) * scale).softmax(-1)
    return torch.einsum("hl,lhd->hd", probs, v)


@pytest.mark.parametrize("seq_len", [1, 16, 17, 100])
@pytest.mark.parametrize("consecutive", [True, False])
def test_batch_one_decode_reads_exact_length_from_seq_lens(seq_len: int, consecutive: bool) -> None:
    from engine.attention.torch_backend import _attend_decode

    g = torch.Generator().manual_seed(seq_len)
    block_size, heads, kv_heads, head_dim = 16, 6, 2, 32
    nb = -(-seq_len // block_size)
    k_cache = torch.randn(nb + 20, block_size, kv_heads, head_dim, generator=g)
    v_cache = torch.randn(nb + 20, block_size, kv_heads, head_dim, generator=g)
    blocks = list(range(3, 3 + nb)) if consecutive else [int(b) + 1 for b in torch.randperm(nb + 19, generator=g)[:nb]]
    table = torch.tensor([blocks + [0, 0]], dtype=torch.int32)  # padded, as in the metadata
    q = torch.randn(1, heads, head_dim, generator=g)
    # max_seq_len is a host upper bound (decode graphs pass max_model_len): only seq_lens is exact
    out = _attend_decode(q, k_cache, v_cache, table, torch.tensor([seq_len], dtype=torch.int32),
                         seq_len + 50, head_dim ** -0.5)
    k = k_cache[torch.tensor(blocks)].flatten(0, 1)[:seq_len]
    v = v_cache[torch.tensor(blocks)].flatten(0, 1)[:seq_len]
    torch.testing.assert_close(out[0], _plain_attention(q[0], k, v, head_dim ** -0.5), rtol=1e-5, atol=1e-5)


def test_dense_bias_puts_bans_over_biases() -> None:
    from engine.params import SamplingParams
    from engine.sampling_batch import _dense_bias

    params = [SamplingParams(logit_bias={3: 1.5, 7: 2.0}), SamplingParams(), SamplingParams(logit_bias={1: -2.0})]
    bias = _dense_bias(params, [[7, 0], [], [4]], 3, 10, torch.device("cpu"))
    want = torch.zeros(3, 10)
    want[0, 3], want[0, 7], want[0, 0] = 1.5, float("-inf"), float("-inf")
    want[2, 1], want[2, 4] = -2.0, float("-inf")
    assert torch.equal(bias, want)
