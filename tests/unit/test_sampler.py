"""Sampler: pure functions; seeded rows independent of batch composition; masks and filters."""

from __future__ import annotations

import pytest
import torch

from sluicegate.engine.sampler import SamplingTensors, sample
from sluicegate.engine.token_bitmask import unpack_bitmask


def _tensors(n: int, temperature: float = 1.0, seeds: list[int | None] | None = None,
             **kw: object) -> SamplingTensors:
    seeds = seeds or [None] * n
    gens = [torch.Generator().manual_seed(s) if s is not None else None for s in seeds]
    t = SamplingTensors(
        temperature=torch.full((n,), temperature), top_p=torch.ones(n), top_k=torch.zeros(n, dtype=torch.long),
        min_p=torch.zeros(n), generators=gens, shared_generator=torch.Generator().manual_seed(123),
        all_greedy=temperature == 0)
    for k, v in kw.items():
        setattr(t, k, v)
    return t


def test_greedy_is_argmax() -> None:
    logits = torch.randn(4, 100)
    out = sample(logits.clone(), _tensors(4, temperature=0.0))
    assert out.token_ids.tolist() == logits.argmax(-1).tolist()


def test_seeded_row_does_not_depend_on_batch() -> None:
    torch.manual_seed(0)
    row = torch.randn(1, 500)
    alone = [sample(row.clone(), _tensors(1, seeds=[42])).token_ids.item()]
    gen_alone = torch.Generator().manual_seed(42)
    batch = torch.cat([torch.randn(3, 500), row])
    t = _tensors(4, seeds=[None, 7, None, 42])
    in_batch = sample(batch.clone(), t).token_ids[3].item()
    assert alone[0] == in_batch
    del gen_alone


def test_the_host_flags_skip_work_without_changing_draws() -> None:
    """any_greedy=False skips the greedy argmax, top_filters=False the filters' tensor checks."""
    logits = torch.randn(3, 200)
    seeds: list[int | None] = [1, 2, 3]
    looked_up = sample(logits.clone(), _tensors(3, seeds=seeds)).token_ids
    told = sample(logits.clone(), _tensors(3, seeds=seeds, any_greedy=False, top_filters=False)).token_ids
    assert torch.equal(looked_up, told)
    mixed = _tensors(3, seeds=seeds)
    mixed.temperature[1] = 0.0
    assert sample(logits.clone(), mixed).token_ids[1].item() == logits[1].argmax().item()


def test_seeded_sequence_reproducible() -> None:
    logits = torch.randn(1, 300)
    a = [sample(logits.clone(), t).token_ids.item() for t in [_tensors(1, seeds=[5])] for _ in range(1)]
    b = [sample(logits.clone(), _tensors(1, seeds=[5])).token_ids.item()]
    assert a == b


def test_top_k_one_equals_greedy() -> None:
    logits = torch.randn(8, 64)
    out = sample(logits.clone(), _tensors(8, top_k=torch.ones(8, dtype=torch.long)))
    assert out.token_ids.tolist() == logits.argmax(-1).tolist()


def test_top_p_small_keeps_top_token() -> None:
    logits = torch.randn(8, 64)
    out = sample(logits.clone(), _tensors(8, top_p=torch.full((8,), 1e-6)))
    assert out.token_ids.tolist() == logits.argmax(-1).tolist()


def test_bitmask_restricts_choice() -> None:
    vocab = 70
    logits = torch.randn(2, vocab)
    bitmask = torch.zeros(2, 3, dtype=torch.int32)
    bitmask[0, 1] = 1 << 5  # only token 37 allowed in row 0
    bitmask[1, 2] = 1 << 1  # only token 65 in row 1
    for temperature in (0.0, 1.0):
        out = sample(logits.clone(), _tensors(2, temperature=temperature, bitmask=bitmask))
        assert out.token_ids.tolist() == [37, 65]
    allowed = unpack_bitmask(torch.full((1, 3), -1, dtype=torch.int32), vocab)
    assert allowed.shape == (1, vocab) and bool(allowed.all())


def test_logit_bias_and_penalties() -> None:
    logits = torch.zeros(1, 10)
    bias = torch.zeros(1, 10)
    bias[0, 3] = 100.0
    assert sample(logits.clone(), _tensors(1, temperature=0.0, logit_bias=bias)).token_ids.item() == 3
    logits = torch.zeros(1, 10)
    logits[0, 2] = 1.0
    counts = torch.zeros(1, 10)
    counts[0, 2] = 3
    t = _tensors(1, temperature=0.0, output_counts=counts, frequency_penalty=torch.tensor([1.0]),
                 presence_penalty=torch.tensor([0.0]))
    assert sample(logits.clone(), t).token_ids.item() != 2


def test_logprobs_are_of_the_raw_distribution() -> None:
    logits = torch.randn(2, 50)
    t = _tensors(2, temperature=0.0, num_logprobs=3)
    out = sample(logits.clone(), t)
    ref = logits.log_softmax(-1)
    assert out.logprobs is not None and out.top_ids is not None
    assert torch.allclose(out.logprobs, ref.gather(1, out.token_ids[:, None]).squeeze(1))
    assert out.top_ids[:, 0].tolist() == out.token_ids.tolist()


def test_draws_follow_the_distribution_over_a_large_vocabulary() -> None:
    """Over a 49k vocabulary, the mass drawn from each band of ranks (the top token down to the
    long tail) matches the tempered softmax within 5 standard deviations."""
    vocab, rows, rounds, temperature = 49_152, 500, 16, 0.8
    logits = torch.cat([torch.tensor([12.0, 10.0, 9.0]), torch.randn(vocab - 3, generator=torch.Generator().manual_seed(0)) * 2])
    probs = (logits / temperature).softmax(-1).double()
    counts = torch.zeros(vocab, dtype=torch.float64)
    t = _tensors(rows, temperature=temperature)
    for _ in range(rounds):
        counts += torch.bincount(sample(logits.expand(rows, vocab).clone(), t).token_ids, minlength=vocab)
    n = rows * rounds
    order = probs.argsort(descending=True)
    for lo, hi in [(0, 1), (1, 3), (3, 20), (20, 200), (200, 2000), (2000, 20000), (20000, vocab)]:
        expected, drawn = probs[order[lo:hi]].sum().item(), counts[order[lo:hi]].sum().item() / n
        sigma = (expected * (1 - expected) / n) ** 0.5
        assert abs(drawn - expected) <= 5 * sigma, f"ranks {lo}-{hi}: drew {drawn:.4f}, expected {expected:.4f}"


def test_a_uniform_at_either_end_never_draws_a_masked_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """u = 0 draws the first token with mass; u = 1 (which a float draw can round to) the last one,
    even when the vocabulary's first and last tokens are masked out."""
    import sluicegate.engine.sampler as sampler

    logits = torch.randn(2, 64)
    allowed = torch.zeros(2, 64, dtype=torch.bool)
    allowed[:, 5] = allowed[:, 9] = allowed[:, 40] = True
    bias = torch.zeros(2, 64).masked_fill(~allowed, float("-inf"))
    for u, want in [(0.0, 5), (1.0, 40), (1.0 - 2.0 ** -53, 40)]:
        monkeypatch.setattr(sampler, "_row_uniforms", lambda t, rows, device, u=u: torch.full((rows,), u, dtype=torch.float64))
        out = sample(logits.clone(), _tensors(2, logit_bias=bias))
        assert out.token_ids.tolist() == [want, want]
