"""SamplingParams: everything a request asks of decoding, validated before anything is scheduled."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluicegate.grammars.specs import GrammarSpec


# OpenAI's `prompt_cache_retention` values -> how long the request's cached blocks stay protected
# after their last use (engine/kv_cache/block_pool.py: pinned prefixes).
CACHE_RETENTION_SECONDS = {"in_memory": 0.0, "24h": 24 * 3600.0}


class InvalidRequestError(ValueError):
    """A request the engine refuses before scheduling; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


@dataclass
class SamplingParams:
    max_tokens: int | None = 16  # None: up to the context limit
    min_tokens: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    include_stop_str_in_output: bool = False
    ignore_eos: bool = False
    logprobs: int | None = None  # top-N logprobs per output token (0: only the sampled token)
    skip_special_tokens: bool = True
    # Structured output: compiled by grammars/, enforced by a per-row bitmask before sampling.
    grammar: GrammarSpec | None = None
    # "24h" pins the request's cached prefix (evicted after every unpinned free block); None or
    # "in_memory": ordinary LRU caching.
    prompt_cache_retention: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def cache_pin_seconds(self) -> float:
        return CACHE_RETENTION_SECONDS.get(self.prompt_cache_retention or "in_memory", 0.0)

    def validate(self, vocab_size: int) -> None:
        """Raise InvalidRequestError naming the first bad field."""
        def bad(param: str, msg: str) -> InvalidRequestError:
            return InvalidRequestError(msg, param=param)

        if self.max_tokens is not None and self.max_tokens < 1:
            raise bad("max_tokens", f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.min_tokens < 0 or (self.max_tokens is not None and self.min_tokens > self.max_tokens):
            raise bad("min_tokens", f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        for name in ("temperature", "top_p", "min_p", "repetition_penalty", "presence_penalty",
                     "frequency_penalty"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(name, f"{name} must be a finite number, got {value!r}")
        if self.temperature < 0:
            raise bad("temperature", f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise bad("top_p", f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise bad("top_k", f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if not 0.0 <= self.min_p <= 1.0:
            raise bad("min_p", f"min_p must be in [0, 1], got {self.min_p}")
        if self.repetition_penalty <= 0:
            raise bad("repetition_penalty", f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if not -2.0 <= self.presence_penalty <= 2.0:
            raise bad("presence_penalty", f"presence_penalty must be in [-2, 2], got {self.presence_penalty}")
        if not -2.0 <= self.frequency_penalty <= 2.0:
            raise bad("frequency_penalty", f"frequency_penalty must be in [-2, 2], got {self.frequency_penalty}")
        for token_id, bias in self.logit_bias.items():
            if not 0 <= int(token_id) < vocab_size:
                raise bad("logit_bias", f"logit_bias token id {token_id} is outside the vocabulary [0, {vocab_size})")
            if not math.isfinite(bias) or not -100 <= bias <= 100:
                raise bad("logit_bias", f"logit_bias values must be in [-100, 100], got {bias}")
        for token_id in self.stop_token_ids:
            if not 0 <= token_id < vocab_size:
                raise bad("stop_token_ids", f"stop token id {token_id} is outside the vocabulary")
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            raise bad("stop", "stop sequences must be non-empty strings")
        if self.logprobs is not None and not 0 <= self.logprobs <= 20:
            raise bad("logprobs", f"logprobs must be in [0, 20], got {self.logprobs}")
        if self.prompt_cache_retention not in (None, *CACHE_RETENTION_SECONDS):
            raise bad("prompt_cache_retention", "prompt_cache_retention must be one of "
                      f"{sorted(CACHE_RETENTION_SECONDS)}, got {self.prompt_cache_retention!r}")
        if self.seed is not None and not -(2**63) <= self.seed < 2**63:
            raise bad("seed", "seed must fit in a signed 64-bit integer")
