"""Build the per-row SamplingTensors for the requests that sample this step (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.request import Request
from engine.sampler import SamplingTensors


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
        return torch.tensor(values, dtype=dtype, device=device)

    tensors = SamplingTensors(
        temperature=col([p.temperature for p in params]),
        top_p=col([p.top_p for p in params]),
        top_k=col([p.top_k for p in params], torch.long),
        min_p=col([p.min_p for p in params]),
        generators=[r.generator for r in requests],
        shared_generator=shared_generator,
        bitmask=bitmask,
        all_greedy=all(p.temperature == 0 for p in params),
    )
    wanted = [p.logprobs for p in params if p.logprobs is not None]
    tensors.num_logprobs = max(wanted) if wanted else -1

    if any(p.repetition_penalty != 1.0 for p in params):
        tensors.repetition_penalty = col([p.repetition_penalty for p in params])
        seen = torch.zeros((n, vocab_size), dtype=torch.bool, device=device)
        for i, r in enumerate(requests):
            seen[i, torch.tensor(r.token_ids, dtype=torch.long, device=device)] = True
        tensors.seen_mask = seen
    if any(p.presence_penalty or p.frequency_penalty for p in params):
        tensors.presence_penalty = col([p.presence_penalty for p in params])
        tensors.frequency_penalty = col([p.frequency_penalty for p in params])
        counts = torch.zeros((n, vocab_size), dtype=torch.float32, device=device)
        for i, r in enumerate(requests):
            out = r.output_token_ids
            if out:
                ids = torch.tensor(out, dtype=torch.long, device=device)
                counts[i].index_add_(0, ids, torch.ones(len(out), device=device))
        tensors.output_counts = counts

    bans = [_min_tokens_bans(r) for r in requests]
    if any(p.logit_bias for p in params) or any(bans):
        bias = torch.zeros((n, vocab_size), dtype=torch.float32, device=device)
        for i, (p, banned) in enumerate(zip(params, bans)):
            for token_id, value in p.logit_bias.items():
                bias[i, int(token_id)] = value
            for token_id in banned:
                bias[i, token_id] = float("-inf")
        tensors.logit_bias = bias
    return tensors
