"""What the engine hands back: one RequestOutput per request per step (deltas, not totals)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()  # (token_id, logprob), best first


@dataclass
class RequestOutput:
    """A step's news for one request.

    new_token_ids / new_text are what this step added (text held back while a stop string might
    still match, or while a UTF-8 character is incomplete). On the final output, finish_reason is
    "stop" | "length" | "abort" | "error", and `error` carries the message for "error".
    """

    request_id: str
    new_token_ids: list[int]
    new_text: str
    finished: bool = False
    finish_reason: str | None = None
    stop_reason: str | int | None = None  # the stop string or stop token that ended it
    num_prompt_tokens: int = 0
    num_cached_tokens: int = 0
    num_output_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    error: str | None = None
    # The exception behind finish_reason "error" (e.g. a GrammarError), for callers that re-raise it.
    exception: BaseException | None = None


@dataclass
class CompletionOutput:
    """The offline API's result for one prompt (what `LLM.generate` returns)."""

    request_id: str
    prompt_token_ids: list[int]
    text: str
    token_ids: list[int]
    finish_reason: str | None
    num_cached_tokens: int
    logprobs: list[TokenLogprob] = field(default_factory=list)
