"""Engine TokenLogprobs -> OpenAI's logprobs objects (chat: content[]; completions: the legacy lists)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from sluicegate.gateway.protocol import CompletionLogprobs, TokenLogprobOut, TopLogprob


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE: the printable character each byte is written as, inverted."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


class TokenText:
    """A token id's text and exact bytes, cached (a vocabulary is small; requests repeat tokens)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def get(self, token_id: int) -> tuple[str, list[int]]:
        hit = self._cache.get(token_id)
        if hit is None:
            hit = self._cache[token_id] = self._compute(token_id)
        return hit

    def _compute(self, token_id: int) -> tuple[str, list[int]]:
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        decoder = _byte_decoder()
        if isinstance(piece, str) and piece and all(ch in decoder for ch in piece):
            raw = bytes(decoder[ch] for ch in piece)  # byte-level BPE: exact bytes, even half a character
            return raw.decode("utf-8", errors="replace"), list(raw)
        text = self.tokenizer.decode([token_id])
        return text, list(text.encode("utf-8"))


def chat_logprobs(entries: Sequence[Any], tokens: TokenText) -> list[TokenLogprobOut]:
    """Engine TokenLogprob(token_id, logprob, top) list -> chat `logprobs.content` entries."""
    out: list[TokenLogprobOut] = []
    for e in entries:
        text, raw = tokens.get(e.token_id)
        top = [TopLogprob(token=t, logprob=lp, bytes=b)
               for t, b, lp in ((*tokens.get(tid), lp) for tid, lp in e.top)]
        out.append(TokenLogprobOut(token=text, logprob=e.logprob, bytes=raw, top_logprobs=top))
    return out


def completion_logprobs(entries: Sequence[Any], tokens: TokenText, offset: int) -> CompletionLogprobs:
    """Legacy completions logprobs: parallel lists; text_offset counts characters from `offset`."""
    result = CompletionLogprobs()
    pos = offset
    for e in entries:
        text, _ = tokens.get(e.token_id)
        result.tokens.append(text)
        result.token_logprobs.append(e.logprob)
        result.top_logprobs.append({tokens.get(tid)[0]: lp for tid, lp in e.top} if e.top else None)
        result.text_offset.append(pos)
        pos += len(text)
    return result
