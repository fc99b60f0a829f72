"""Build the per-row SamplingTensors for the requests that sample this step (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sluicegate.engine.host_to_device import tensor_on
from sluicegate.engine.params import SamplingParams
from sluicegate.engine.request import Request
from sluicegate.engine.sampler import SamplingTensors


def _min_tokens_bans(request: Request) -> list[int]:
    """Tokens that may not end the output before min_tokens are produced."""
    params = request.params
    if request.num_output_tokens >= params.min_tokens:
        return []
    return [*request.eos_token_ids, *params.stop_token_ids]


def build_sampling_tensors(requests: Sequence[Request], vocab_size: int, device: torch.device,
                           shared_generator: torch.Generator | None,
                           bitmask: torch.Tensor | None) -> SamplingTensors:
    params = [r.params for r in requests]
    n = len(requests)

    def col(values: list[float], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return tensor_on(values, dtype, device)  # pinned, non-blocking on CUDA

    tensors = SamplingTensors(
        temperature=col([p.temperature for p in params]),
        top_p=col([p.top_p for p in params]),
        top_k=col([p.top_k for p in params], torch.long),
        min_p=col([p.min_p for p in params]),
        generators=[r.generator for r in requests],
        shared_generator=shared_generator,
        bitmask=bitmask,
        all_greedy=all(p.temperature == 0 for p in params),
        any_greedy=any(p.temperature == 0 for p in params),
        top_filters=any(p.top_k > 0 or p.top_p < 1.0 or p.min_p > 0 for p in params),
    )
    wanted = [p.logprobs for p in params if p.logprobs is not None]
    tensors.num_logprobs = max(wanted) if wanted else -1

    if any(p.repetition_penalty != 1.0 for p in params):
        tensors.repetition_penalty = col([p.repetition_penalty for p in params])
        seen = torch.zeros((n, vocab_size), dtype=torch.bool, device=device)
        for i, r in enumerate(requests):
            seen[i, tensor_on(r.token_ids, torch.long, device)] = True
        tensors.seen_mask = seen
    if any(p.presence_penalty or p.frequency_penalty for p in params):
        tensors.presence_penalty = col([p.presence_penalty for p in params])
        tensors.frequency_penalty = col([p.frequency_penalty for p in params])
        counts = torch.zeros((n, vocab_size), dtype=torch.float32, device=device)
        for i, r in enumerate(requests):
            out = r.output_token_ids
            if out:
                ids = tensor_on(out, torch.long, device)
                counts[i].index_add_(0, ids, torch.ones(len(out), device=device))
        tensors.output_counts = counts

    bans = [_min_tokens_bans(r) for r in requests]
    if any(p.logit_bias for p in params) or any(bans):
        tensors.logit_bias = _dense_bias(params, bans, n, vocab_size, device)
    return tensors


def _dense_bias(params: Sequence[SamplingParams], bans: list[list[int]], n: int, vocab_size: int,
                device: torch.device) -> torch.Tensor:
    """[n, vocab_size] float32: each row's logit_bias, then -inf on its banned tokens.

    Two index_put_ calls instead of one element write per entry (a decode step with min_tokens
    on every row of a batch of 32 wrote ~64 elements one by one); the bans go second so they
    win over a bias on the same token."""
    bias = torch.zeros((n, vocab_size), dtype=torch.float32, device=device)
    rows = [i for i, p in enumerate(params) for _ in p.logit_bias]
    if rows:
        cols = [int(t) for p in params for t in p.logit_bias]
        values = [float(v) for p in params for v in p.logit_bias.values()]
        bias.index_put_((_ids(rows, device), _ids(cols, device)), tensor_on(values, torch.float32, device))
    ban_rows = [i for i, banned in enumerate(bans) for _ in banned]
    if ban_rows:
        ban_cols = [t for banned in bans for t in banned]
        bias.index_put_((_ids(ban_rows, device), _ids(ban_cols, device)),
                        torch.tensor(float("-inf"), device=device))
    return bias


def _ids(values: list[int], device: torch.device) -> torch.Tensor:
    return tensor_on(values, torch.long, device)
