"""engine/kernels/cpu_ops.py: the C++ kernels compute what torch's ops compute (bit for bit, but for
RMSNorm's summation order and the prefill softmax's exp; paged decode attention within bf16's
rounding of the fp32 truth), refuse bad input with a clear error, and a machine that cannot build
them gets torch's ops and one reason."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sluicegate.engine.attention import torch_backend
from sluicegate.engine.attention.torch_backend import store_kv
from sluicegate.engine.kernels import cpu_ops
from sluicegate.engine.models.rope import apply_rope, rope_cache, rotation_signs
from tests.kernels.paged_cases import assert_close, make_batch, reference_output

needs_kernels = pytest.mark.skipif(not cpu_ops.load(), reason="the CPU kernels cannot be built here")
ops = torch.ops.sluicegate
BF16 = torch.bfloat16


def every_bf16_value() -> torch.Tensor:
    """All 65,536 bf16 bit patterns (NaNs and infinities included) as [64, 1024]."""
    return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(BF16).reshape(64, 1024)


@needs_kernels
def test_silu_mul_equals_torch_for_every_bf16_gate() -> None:
    gate = every_bf16_value()
    up = torch.randn(gate.shape).to(BF16)
    want = F.silu(gate) * up
    got = ops.silu_mul(torch.cat([gate, up], dim=1))
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(got[~torch.isnan(want)], want[~torch.isnan(want)])


@needs_kernels
@pytest.mark.parametrize("tokens", [1, 5, 32, 300])
def test_rope_store_kv_equals_rope_then_store(tokens: int) -> None:
    heads, kv_heads, dim = 9, 3, 64
    cos, sin = rope_cache(dim, 10000.0, None, 4096, torch.device("cpu"), BF16)
    signed_sin = rotation_signs(sin)
    gen = torch.Generator().manual_seed(tokens)
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * dim, generator=gen).to(BF16)
    positions = torch.randint(0, 4096, (tokens,), generator=gen)
    slots = torch.randperm(40 * 16, generator=gen)[:tokens]
    caches = [torch.zeros(40, 16, kv_heads, dim, dtype=BF16) for _ in range(4)]

    qk = qkv[:, : (heads + kv_heads) * dim].view(tokens, heads + kv_heads, dim)
    q, k = apply_rope(qk, cos[positions, None], signed_sin[positions, None]).split([heads, kv_heads], dim=1)
    store_kv(k, qkv[:, (heads + kv_heads) * dim:].view(tokens, kv_heads, dim), caches[0], caches[1], slots)
    got = ops.rope_store_kv(qkv, cos[positions], signed_sin[positions], caches[2], caches[3], slots, heads, kv_heads)
    assert torch.equal(got, q)
    assert torch.equal(caches[2], caches[0]) and torch.equal(caches[3], caches[1])


@needs_kernels
@pytest.mark.parametrize("tokens", [1, 4, 32, 300])
def test_add_rms_norm_matches_torch_within_a_rounding(tokens: int) -> None:
    """The sum is exact; the norm sums squares in another order than torch's reduction, so a value
    may round to the neighbouring bf16 (rarely: under 0.1% of values), never further."""
    gen = torch.Generator().manual_seed(tokens)
    residual, delta = (torch.randn(tokens, 576, generator=gen).to(BF16) for _ in range(2))
    weight = (torch.rand(576, generator=gen) + 0.5).to(BF16)
    total, normed = ops.add_rms_norm(residual, delta, weight, 1e-5)
    assert torch.equal(total, residual + delta)
    want = F.rms_norm(residual + delta, (576,), weight, 1e-5)
    for got in (normed, ops.rms_norm(residual + delta, weight, 1e-5)):
        ulp = torch.finfo(BF16).eps * want.float().abs()
        assert ((got.float() - want.float()).abs() <= ulp).all()
        assert (got != want).float().mean().item() < 1e-3


# One token, a block exactly full, a block plus one, mid-block ends, 16-token chunks and a tail.
SEQ_LENS = [1, 16, 17, 40, 75, 333]


@needs_kernels
@pytest.mark.parametrize("dtype", [BF16, torch.float32])
@pytest.mark.parametrize(("head_dim", "group"), [(64, 3), (64, 1), (128, 7), (64, 16)])
def test_paged_decode_attention_matches_the_fp32_reference(head_dim: int, group: int, dtype: torch.dtype) -> None:
    batch = make_batch([1] * len(SEQ_LENS), SEQ_LENS, num_kv_heads=2, group=group, head_dim=head_dim,
                       dtype=dtype, device=torch.device("cpu"), seed=group * head_dim)
    expected = reference_output(batch)  # store + attend in fp32, on copies
    store_kv(batch.k_new, batch.v_new, batch.k_cache, batch.v_cache, batch.meta.slot_mapping)
    meta = batch.meta
    got = ops.paged_decode_attention(batch.q, batch.k_cache, batch.v_cache, meta.block_tables, meta.seq_lens,
                                     batch.scale)
    assert_close(got, expected, dtype)


@needs_kernels
def test_the_torch_backend_sends_bf16_decode_rows_to_the_kernel() -> None:
    """Decode-only and mixed steps (decode rows beside prefill chunks, whose softmax is the fused
    kernel's), against the fp32 reference."""
    backend = torch_backend.TorchAttentionBackend(cpu_kernels=True)
    assert backend.cpu_kernels and not torch_backend.TorchAttentionBackend().cpu_kernels
    for query_lens, seq_lens in (([1, 1, 1], [5, 40, 200]), ([1, 12, 1], [30, 12, 90]), ([1, 20], [17, 60]),
                                 ([150, 1], [1450, 33])):
        batch = make_batch(query_lens, seq_lens, num_kv_heads=3, group=3, head_dim=64, dtype=BF16,
                           device=torch.device("cpu"), seed=sum(seq_lens))
        expected = reference_output(batch)
        backend.store_kv(batch.k_new, batch.v_new, batch.k_cache, batch.v_cache, batch.meta.slot_mapping)
        assert_close(backend.attend(batch.q, batch.k_cache, batch.v_cache, batch.meta, batch.scale), expected, BF16)


def masked_softmax(scores: torch.Tensor, first_pos: int, scale: float) -> torch.Tensor:
    """torch's fp32 softmax of scale * scores [G, Q, L], row q seeing keys 0..first_pos + q."""
    queries, keys = scores.shape[1:]
    future = torch.arange(keys)[None, :] > torch.arange(first_pos, first_pos + queries)[:, None]
    return (scores.float() * scale).masked_fill(future, float("-inf")).softmax(-1).to(scores.dtype)


@needs_kernels
@pytest.mark.parametrize(("groups", "queries", "keys", "first_pos"),
                         [(9, 130, 1580, 1450), (9, 64, 64, 0), (27, 5, 7, 2), (3, 1, 1, 0), (9, 40, 1000, 17)])
def test_causal_softmax_matches_torch_within_a_rounding(groups: int, queries: int, keys: int, first_pos: int) -> None:
    """In place over bf16 scores: exact zeros past each row's position, and probabilities that differ
    from torch's fp32 softmax rounded to bf16 by at most one bf16 step, rarely (the exp differs)."""
    gen = torch.Generator().manual_seed(keys)
    scores = (torch.randn(groups, queries, keys, generator=gen) * 4).to(BF16)
    want = masked_softmax(scores, first_pos, 0.125)
    got = scores.clone()
    ops.causal_softmax_(got, first_pos, 0.125)
    future = torch.arange(keys)[None, :] > torch.arange(first_pos, first_pos + queries)[:, None]
    assert torch.equal(got[:, future], torch.zeros_like(got[:, future]))
    differ = got != want
    assert differ.float().mean() < 1e-3
    step = torch.finfo(BF16).eps * want.float().abs()  # one bf16 step at the value's magnitude
    assert ((got.float() - want.float()).abs() <= step * 1.01)[differ].all()
    torch.testing.assert_close(got.float().sum(-1), torch.ones(groups, queries), atol=0.02, rtol=0)


@needs_kernels
def test_float32_inputs_match_torch_closely() -> None:
    x = torch.randn(3, 64)
    weight = torch.rand(64) + 0.5
    torch.testing.assert_close(ops.rms_norm(x, weight, 1e-6), F.rms_norm(x, (64,), weight, 1e-6))
    gate_up = torch.randn(3, 128)
    torch.testing.assert_close(ops.silu_mul(gate_up), F.silu(gate_up[:, :64]) * gate_up[:, 64:])


@needs_kernels
def test_bad_input_is_refused_with_a_clear_error() -> None:
    cache = torch.zeros(4, 16, 1, 8, dtype=BF16)
    qkv = torch.randn(1, 3 * 8).to(BF16)
    cos = torch.ones(1, 8, dtype=BF16)
    with pytest.raises(RuntimeError, match="outside the cache"):
        ops.rope_store_kv(qkv, cos, cos, cache, cache.clone(), torch.tensor([64]), 1, 1)
    with pytest.raises(RuntimeError, match="width does not match"):
        ops.rope_store_kv(qkv, cos, cos, cache, cache.clone(), torch.tensor([0]), 2, 1)
    with pytest.raises(RuntimeError, match="bfloat16 or float32"):
        ops.silu_mul(torch.zeros(1, 4, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="weight must be"):
        ops.rms_norm(torch.zeros(1, 8, dtype=BF16), torch.zeros(4, dtype=BF16), 1e-6)
    caches = torch.zeros(2, 4, 16, 1, 64, dtype=BF16).unbind(0)
    q = torch.zeros(1, 2, 64, dtype=BF16)
    table = torch.tensor([[0, 1]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match="outside its block table"):
        ops.paged_decode_attention(q, *caches, table, torch.tensor([33], dtype=torch.int32), 0.125)
    with pytest.raises(RuntimeError, match="block id outside the cache"):
        ops.paged_decode_attention(q, *caches, table + 3, torch.tensor([20], dtype=torch.int32), 0.125)
    with pytest.raises(RuntimeError, match="must lie within the 8 keys"):
        ops.causal_softmax_(torch.zeros(1, 4, 8, dtype=BF16), 5, 0.125)
    with pytest.raises(RuntimeError, match="contiguous CPU tensor"):
        ops.causal_softmax_(torch.zeros(1, 8, 4, dtype=BF16).transpose(1, 2), 0, 0.125)
    with pytest.raises(RuntimeError, match="head sizes 64 and 128"):
        ops.paged_decode_attention(torch.zeros(1, 2, 80, dtype=BF16), *torch.zeros(2, 4, 16, 1, 80, dtype=BF16).unbind(0),
                                   table, torch.tensor([20], dtype=torch.int32), 0.125)


@needs_kernels
def test_the_model_runs_its_steps_through_the_kernels_and_agrees_with_torch() -> None:
    """Same engine, kernels on and off for the same prefill step (two 40-token prompts: 80 rows, the
    threaded kernels and the fused softmax) and decode step: the final hidden states differ only by
    the norms' rare neighbouring roundings, the softmax's exp and decode attention's fp32 (vs bf16)
    inside, through 30 layers."""
    from sluicegate.engine.llm import build_config
    from sluicegate.engine.llm_engine import LLMEngine
    from sluicegate.engine.models.loader import load_model
    from sluicegate.engine.params import SamplingParams

    loaded = load_model(None, BF16, torch.device("cpu"), progress=None)
    engine = LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64), loaded=loaded)
    model = engine.runner.model
    assert model.cpu_kernels and engine.backend.cpu_kernels
    assert not LLMEngine(build_config(None, dtype="bfloat16", num_blocks=64, cpu_kernels=False),
                         loaded=loaded).runner.model.cpu_kernels
    for i in range(2):
        engine.add_request(list(range(900 + i, 940 + i)), SamplingParams(max_tokens=8, temperature=0.0))
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []
    forward = model.forward

    def twice(input_ids, positions, kv_caches, meta):  # noqa: ANN001, ANN202
        model.cpu_kernels = engine.backend.cpu_kernels = False
        eager = forward(input_ids, positions, kv_caches, meta)
        model.cpu_kernels = engine.backend.cpu_kernels = True
        fused = forward(input_ids, positions, kv_caches, meta)  # rewrites the same k/v slots
        captured.append((eager, fused))
        return fused

    model.forward = twice
    try:
        engine.step()  # both prompts' prefill
        engine.step()  # two decode rows
    finally:
        del model.forward
    assert [eager.shape[0] for eager, _ in captured] == [80, 2]
    for eager, fused in captured:
        assert eager.shape == fused.shape
        assert (fused.float() - eager.float()).norm() <= 0.02 * eager.float().norm()
    for request_id in list(engine.requests):
        engine.abort(request_id)
    while engine.has_unfinished():
        engine.step()
    engine.check_integrity()


def test_without_a_compiler_the_build_fails_once_with_the_reason(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEGATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_ops, "_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        cpu_ops.build()


def test_a_failed_build_is_remembered_and_not_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICEGATE_CACHE_DIR", str(tmp_path))
    failing = tmp_path / "cxx"
    failing.write_text("#!/bin/sh\necho 'cxx: error: this compiler always fails' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(cpu_ops, "_compiler", lambda: str(failing))
    with pytest.raises(RuntimeError, match="always fails"):
        cpu_ops.build()
    (marker,) = tmp_path.glob(f"kernels/*/{cpu_ops.FAILED_NAME}")
    failing.write_text("#!/bin/sh\necho ran >> " + str(tmp_path / "runs") + "\nexit 1\n")
    with pytest.raises(RuntimeError, match="always fails"):
        cpu_ops.build()
    assert (tmp_path / "runs").read_text() == "ran\n"  # the version query for the cache key; no compile
    assert marker.exists()
