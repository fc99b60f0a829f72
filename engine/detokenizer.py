"""Incremental detokenizer: UTF-8 safe across tokens, stop strings never leak into the text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Decoder(Protocol):
    def decode(self, token_ids: Any, skip_special_tokens: bool = ..., **kwargs: Any) -> Any: ...


class IncrementalDetokenizer:
    """Turns a growing token list into text deltas.

    Decoding a window [prefix_offset:] and diffing against [prefix_offset:read_offset] keeps
    tokenizers' context-dependent spacing right; a trailing U+FFFD means an unfinished multi-byte
    character, so that text waits for the next token. Text that could be the start of a stop string
    is held back until it is known not to be one.
    """

    def __init__(self, tokenizer: Decoder, stop: Sequence[str] = (), include_stop: bool = False,
                 skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.include_stop = include_stop
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""  # all decoded text so far (after any stop truncation)
        self.emitted = 0  # len(text) already handed out
        self.hold = max((len(s) for s in self.stop), default=1) - 1
        self.stopped_on: str | None = None

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=self.skip_special_tokens))

    def add(self, token_id: int) -> str | None:
        """Append one token. Returns the matched stop string if the text now hits one."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
        full = self._decode(self.ids[self.prefix_offset:])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            new = full[len(prefix):]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            start = max(0, len(self.text) - self.hold)
            self.text += new
            return self._check_stop(start)
        return None

    def _check_stop(self, search_from: int) -> str | None:
        for s in self.stop:
            idx = self.text.find(s, search_from)
            if idx >= 0:
                self.text = self.text[: idx + len(s)] if self.include_stop else self.text[:idx]
                self.stopped_on = s
                return s
        return None

    def take_delta(self, final: bool) -> str:
        """Text ready to emit; while not final, keep back what might begin a stop string."""
        if final and self.stopped_on is None and self.read_offset < len(self.ids):
            # flush an incomplete trailing character rather than drop it
            prefix = self._decode(self.ids[self.prefix_offset:self.read_offset])
            self.text += self._decode(self.ids[self.prefix_offset:])[len(prefix):]
            self.prefix_offset = self.read_offset = len(self.ids)
        end = len(self.text) if final or self.stopped_on else max(self.emitted, len(self.text) - self.hold)
        delta = self.text[self.emitted:end]
        self.emitted = end
        return delta
