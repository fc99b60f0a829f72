"""Checks a request must pass before it is queued (pure; raise InvalidRequestError naming the field)."""

from __future__ import annotations

from collections.abc import Sequence

from sluicegate.engine.params import InvalidRequestError, SamplingParams


def resolve_max_tokens(prompt_token_ids: Sequence[int], params: SamplingParams, max_model_len: int,
                       vocab_size: int) -> int:
    """Validate prompt and params; return the output budget (max_tokens made concrete)."""
    if len(prompt_token_ids) == 0:
        raise InvalidRequestError("the prompt is empty: at least one token is required", param="prompt")
    bad = [t for t in prompt_token_ids if not 0 <= t < vocab_size]
    if bad:
        raise InvalidRequestError(f"prompt token id {bad[0]} is outside the vocabulary [0, {vocab_size})",
                                  param="prompt")
    params.validate(vocab_size)
    num_prompt = len(prompt_token_ids)
    requested = params.max_tokens if params.max_tokens is not None else 0
    if num_prompt + max(requested, 1) > max_model_len:
        raise InvalidRequestError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{num_prompt + requested} tokens ({num_prompt} in the messages, {requested} in the completion). "
            "Please reduce the length of the messages or completion.",
            param="messages", code="context_length_exceeded")
    return params.max_tokens if params.max_tokens is not None else max_model_len - num_prompt
