"""Sampling as pure functions over a batch of logits.

Every per-request knob is a per-row tensor in SamplingTensors, built once per step by the engine.
A seeded request draws its noise from its own generator, one row at a time, so its tokens do not
depend on what else shares the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sluicegate.engine.token_bitmask import apply_token_bitmask_

NEG_INF = float("-inf")


@dataclass
class SamplingTensors:
    temperature: torch.Tensor  # [B] float32; 0 = greedy
    top_p: torch.Tensor  # [B] float32
    top_k: torch.Tensor  # [B] int64; 0 = off
    min_p: torch.Tensor  # [B] float32
    generators: list[torch.Generator | None]  # per row; None = the shared generator
    shared_generator: torch.Generator | None = None
    # Optional parts, None when no row uses them (the common fast path).
    repetition_penalty: torch.Tensor | None = None  # [B]
    presence_penalty: torch.Tensor | None = None  # [B]
    frequency_penalty: torch.Tensor | None = None  # [B]
    output_counts: torch.Tensor | None = None  # [B, V] float32, occurrences in the output so far
    seen_mask: torch.Tensor | None = None  # [B, V] bool, in prompt or output (repetition penalty)
    logit_bias: torch.Tensor | None = None  # [B, V] float32 (also -inf for banned tokens)
    bitmask: torch.Tensor | None = None  # [B, ceil(V/32)] int32 grammar masks (-1 rows = free)
    num_logprobs: int = -1  # top-N logprobs wanted by some row (-1: none; 0: sampled token only)
    all_greedy: bool = False

    @property
    def needs_top_filters(self) -> bool:
        return bool((self.top_k > 0).any() or (self.top_p < 1.0).any() or (self.min_p > 0).any())


@dataclass
class SamplerOutput:
    token_ids: torch.Tensor  # [B] int64
    logprobs: torch.Tensor | None  # [B] logprob of the sampled token
    top_ids: torch.Tensor | None  # [B, N]
    top_logprobs: torch.Tensor | None  # [B, N]


def apply_penalties(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    if t.repetition_penalty is not None and t.seen_mask is not None:
        rp = t.repetition_penalty.unsqueeze(1)  # [B, 1]
        penalized = torch.where(logits > 0, logits / rp, logits * rp)
        logits = torch.where(t.seen_mask, penalized, logits)
    if t.output_counts is not None:
        if t.frequency_penalty is not None:
            logits = logits - t.frequency_penalty.unsqueeze(1) * t.output_counts
        if t.presence_penalty is not None:
            logits = logits - t.presence_penalty.unsqueeze(1) * (t.output_counts > 0).float()
    return logits


def apply_top_filters(logits: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    """top-k, top-p, min-p on temperature-scaled logits [B, V]; filtered entries become -inf."""
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    ranks = torch.arange(vocab, device=logits.device).unsqueeze(0)  # [1, V]
    k = torch.where(t.top_k > 0, t.top_k, torch.full_like(t.top_k, vocab)).unsqueeze(1)
    drop = ranks >= k
    probs = sorted_logits.softmax(dim=-1)
    # top-p: keep the smallest prefix whose mass reaches p (the top token always survives)
    cum_before = probs.cumsum(dim=-1) - probs
    drop |= cum_before >= t.top_p.unsqueeze(1)
    drop |= probs < (t.min_p.unsqueeze(1) * probs[:, :1])
    drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, NEG_INF)
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)


def _exponential_noise(probs: torch.Tensor, t: SamplingTensors) -> torch.Tensor:
    noise = torch.empty_like(probs)
    shared_rows = [i for i, g in enumerate(t.generators) if g is None]
    if shared_rows:
        if len(shared_rows) == len(t.generators):
            noise.exponential_(generator=t.shared_generator)
        else:
            idx = torch.tensor(shared_rows, device=probs.device)
            noise[idx] = torch.empty((len(shared_rows), probs.shape[1]), device=probs.device,
                                     dtype=probs.dtype).exponential_(generator=t.shared_generator)
    for i, g in enumerate(t.generators):
        if g is not None:
            noise[i].exponential_(generator=g)
    return noise


@torch.inference_mode()  # the logits come from the runner's inference mode; masks apply in place
def sample(logits: torch.Tensor, t: SamplingTensors) -> SamplerOutput:
    """logits [B, V] float32 (consumed) -> sampled ids [B] and requested logprobs."""
    raw_logprobs = logits.log_softmax(dim=-1) if t.num_logprobs >= 0 else None
    logits = apply_penalties(logits, t)
    if t.logit_bias is not None:
        logits = logits + t.logit_bias
    if t.bitmask is not None:  # on the logits' device: the engine copies it there (pinned, async)
        apply_token_bitmask_(logits, t.bitmask)
    greedy_ids = logits.argmax(dim=-1)
    if t.all_greedy:
        token_ids = greedy_ids
    else:
        temp = torch.where(t.temperature > 0, t.temperature, torch.ones_like(t.temperature))
        scaled = logits / temp.unsqueeze(1)
        if t.needs_top_filters:
            scaled = apply_top_filters(scaled, t)
        probs = scaled.softmax(dim=-1)
        sampled = (probs / _exponential_noise(probs, t)).argmax(dim=-1)
        token_ids = torch.where(t.temperature > 0, sampled, greedy_ids)
    return _with_logprobs(token_ids, raw_logprobs, t.num_logprobs)


def _with_logprobs(token_ids: torch.Tensor, raw: torch.Tensor | None, n: int) -> SamplerOutput:
    if raw is None:
        return SamplerOutput(token_ids, None, None, None)
    chosen = raw.gather(1, token_ids.unsqueeze(1)).squeeze(1)
    if n > 0:
        top_lp, top_ids = raw.topk(n, dim=-1)
        return SamplerOutput(token_ids, chosen, top_ids, top_lp)
    return SamplerOutput(token_ids, chosen, None, None)
