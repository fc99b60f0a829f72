"""Request: one generation's lifecycle state inside the engine."""

from __future__ import annotations

import enum
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluicegate.engine.params import SamplingParams

if TYPE_CHECKING:
    import torch

    from sluicegate.engine.detokenizer import IncrementalDetokenizer
    from sluicegate.engine.kv_cache.block_pool import BlockKey
    from sluicegate.engine.speculative import NgramIndex
    from sluicegate.grammars.backend import Grammar, Matcher
    from sluicegate.grammars.tool_budget import CallTracker


class RequestStatus(enum.Enum):
    WAITING = "waiting"
    WAITING_FOR_GRAMMAR = "waiting_for_grammar"
    RUNNING = "running"
    PREEMPTED = "preempted"
    FINISHED_STOPPED = "stop"
    FINISHED_LENGTH = "length"
    FINISHED_ABORTED = "abort"
    FINISHED_ERROR = "error"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH,
             RequestStatus.FINISHED_ABORTED, RequestStatus.FINISHED_ERROR}


@dataclass(eq=False)
class Request:
    request_id: str
    prompt_token_ids: list[int]
    params: SamplingParams
    max_tokens: int  # resolved against the context limit
    detokenizer: IncrementalDetokenizer
    eos_token_ids: frozenset[int]
    arrival_time: float = field(default_factory=time.monotonic)
    status: RequestStatus = RequestStatus.WAITING
    token_ids: list[int] = field(default_factory=list)  # prompt + outputs
    num_computed_tokens: int = 0
    num_cached_tokens: int = 0  # prefix-cache hits at first scheduling
    num_preemptions: int = 0
    # Prefix-cache key chain of token_ids' full blocks, filled by the KV cache manager as they are
    # needed: kept for the request's lifetime (admission retries, preemption) so each block is
    # hashed once. Valid because token_ids only ever grows.
    block_keys: list[BlockKey] = field(default_factory=list)
    generator: torch.Generator | None = None
    grammar_future: Future[Grammar] | None = None
    matcher: Matcher | None = None
    call_tracker: CallTracker | None = None  # tool calls: end after a call when another cannot fit
    draft_token_ids: list[int] = field(default_factory=list)  # speculative drafts for this step
    ngram: NgramIndex | None = None  # where its n-grams last occurred (speculative drafts)
    stop_reason: str | int | None = None
    error: str | None = None
    exception: BaseException | None = None
    # Output not yet handed to the caller (drained by the engine's step).
    pending_token_ids: list[int] = field(default_factory=list)
    pending_logprobs: list = field(default_factory=list)
    first_token_time: float | None = None

    def __post_init__(self) -> None:
        if not self.token_ids:
            self.token_ids = list(self.prompt_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - len(self.prompt_token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[len(self.prompt_token_ids):]

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished
