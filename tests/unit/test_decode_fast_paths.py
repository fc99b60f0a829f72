"""The decode step's fast paths give the same numbers as the plain formulas they replace."""

from __future__ import annotations

import pytest
import torch


def _plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q [H, D], k/v [L, kv, D] -> [H, D] in fp32, GQA by repeating kv heads."""
    group = q.shape[0] // k.shape[1]
    k, v = k.float().repeat_interleave(group, 1), v.float().repeat_interleave(group, 1)  # [L, H, D]
    probs = (torch.einsum("hd,lhd->hl", q.float(), k) * scale).softmax(-1)
    return torch.einsum("hl,lhd->hd", probs, v)


@pytest.mark.parametrize("seq_len", [1, 16, 17, 100])
@pytest.mark.parametrize("consecutive", [True, False])
def test_batch_one_decode_reads_exact_length_from_seq_lens(seq_len: int, consecutive: bool) -> None:
    from sluicegate.engine.attention.torch_backend import _attend_decode

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
    from sluicegate.engine.params import SamplingParams
    from sluicegate.engine.sampling_batch import _dense_bias

    params = [SamplingParams(logit_bias={3: 1.5, 7: 2.0}), SamplingParams(), SamplingParams(logit_bias={1: -2.0})]
    bias = _dense_bias(params, [[7, 0], [], [4]], 3, 10, torch.device("cpu"))
    want = torch.zeros(3, 10)
    want[0, 3], want[0, 7], want[0, 0] = 1.5, float("-inf"), float("-inf")
    want[2, 1], want[2, 4] = -2.0, float("-inf")
    assert torch.equal(bias, want)


@pytest.mark.parametrize("consecutive", [True, False])
def test_batch_one_decode_reuses_the_context_found_on_the_first_layer(consecutive: bool) -> None:
    """attend() works out where the one sequence's context sits once per step (meta.per_step) and
    every later layer, reading another cache through it, gets what the uncached path gives."""
    from sluicegate.engine.attention.metadata import AttentionMetadata
    from sluicegate.engine.attention.torch_backend import _attend_decode, attend

    g = torch.Generator().manual_seed(7)
    block_size, seq_len = 16, 40
    blocks = [5, 6, 7] if consecutive else [9, 2, 14]
    meta = AttentionMetadata.build([1], [seq_len], [blocks], block_size, torch.device("cpu"))
    for layer in range(3):
        k_cache, v_cache = (torch.randn(20, block_size, 2, 32, generator=g) for _ in range(2))
        q = torch.randn(1, 6, 32, generator=g)
        expected = _attend_decode(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, seq_len, 0.2)
        assert torch.equal(attend(q, k_cache, v_cache, meta, 0.2), expected), layer
    assert "one_context" in meta.per_step


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_as_a_roll_matches_rotate_half_bit_for_bit(dtype: torch.dtype) -> None:
    from sluicegate.engine.models.rope import apply_rope, rope_cache, rotation_signs

    cos, sin = rope_cache(64, 10000.0, None, 512, torch.device("cpu"), dtype)  # [P, D]
    positions = torch.tensor([0, 3, 200, 511])
    x = torch.randn(4, 12, 64, generator=torch.Generator().manual_seed(0)).to(dtype)  # [T, heads, D]
    c, s = cos[positions, None], sin[positions, None]  # [T, 1, D]
    rotate_half = torch.cat([-x[..., 32:], x[..., :32]], dim=-1)  # HF's formula
    expected = x * c + rotate_half * s
    assert torch.equal(apply_rope(x, c, rotation_signs(sin)[positions, None]), expected)


@pytest.mark.parametrize("q_len,seq_len", [(1, 1), (5, 5), (17, 17), (7, 40), (33, 100)])
@pytest.mark.parametrize("consecutive", [True, False])
@pytest.mark.parametrize("scores_bytes", [8 << 20, 1])  # one pass, or one query row per pass
def test_cpu_extend_attention_is_causal_attention_over_the_cache(q_len: int, seq_len: int, consecutive: bool,
                                                                scores_bytes: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from sluicegate.engine.attention import torch_backend

    monkeypatch.setattr(torch_backend, "_SCORES_BYTES", scores_bytes)
    g = torch.Generator().manual_seed(q_len * 1000 + seq_len)
    block_size, heads, kv_heads, head_dim = 16, 6, 2, 32
    nb = -(-seq_len // block_size)
    k_cache = torch.randn(nb + 20, block_size, kv_heads, head_dim, generator=g)
    v_cache = torch.randn(nb + 20, block_size, kv_heads, head_dim, generator=g)
    blocks = list(range(3, 3 + nb)) if consecutive else [int(b) + 1 for b in torch.randperm(nb + 19, generator=g)[:nb]]
    q = torch.randn(q_len, heads, head_dim, generator=g)
    ctx = torch_backend._one_context(torch.tensor(blocks + [0], dtype=torch.int32), seq_len, block_size)
    out = torch_backend._attend_extend_cpu(q, k_cache, v_cache, ctx, head_dim ** -0.5)
    k = k_cache[torch.tensor(blocks)].flatten(0, 1)[:seq_len]
    v = v_cache[torch.tensor(blocks)].flatten(0, 1)[:seq_len]
    for j in range(q_len):  # row j sits at position seq_len - q_len + j and sees positions up to it
        visible = seq_len - q_len + j + 1
        expected = _plain_attention(q[j], k[:visible], v[:visible], head_dim ** -0.5)
        torch.testing.assert_close(out[j], expected, rtol=1e-5, atol=1e-5)
