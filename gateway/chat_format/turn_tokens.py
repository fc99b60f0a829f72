"""An assistant turn's own tokens, spliced back in when the client sends that turn again.

Every chat request is rendered to text and tokenized afresh, but the tokens the model generated for
its last answer are often not the canonical tokenization of that answer's text: under a tool
grammar the model may spell `find_restaurants` as `f` + `ind` + ..., where the tokenizer writes
`find` + .... The prefix cache holds the KV of the generated tokens, so a re-tokenized prompt
misses the cache from the first differing token on and the whole answer is computed again on the
agent's next turn (~40 of its ~150 new tokens in bench/agent_bench.py's workload).

TurnTokens remembers each finished answer's text and token ids, keyed by what the client will send
back (its first tool call id, or its content when it made no call); rendering a later prompt
(ChatRenderer.prompt_ids, for HTTP, gRPC and the MCP tool loop alike), the text around each
remembered answer is tokenized and the answer's own ids are spliced in. The ids
spell exactly the text they replace (checked when remembered), so the model reads the same text;
the previous turn's prompt was tokenized the same way, so the cache hit runs through the answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluicegate.gateway.protocol import AssistantMessage, content_text

# Answers remembered per server (least recently used dropped first): one agent turn each, a few
# hundred token ids apiece.
DEFAULT_CAPACITY = 4096


@dataclass(frozen=True)
class GeneratedTurn:
    text: str  # what the model wrote, as it appears in a rendered prompt
    token_ids: tuple[int, ...]  # the ids it generated for that text


def spelling_ids(text: str, token_ids: Sequence[int], decode: Callable[[list[int]], str]) -> list[int] | None:
    """The generated ids that spell `text`: all of them, or all but a final stop token (EOS is not
    part of the text); None when neither does (e.g. a stop string cut the text)."""
    ids = list(token_ids)
    for candidate in (ids, ids[:-1]):
        if candidate and decode(candidate) == text:
            return candidate
    return None


def turn_key(message: AssistantMessage) -> tuple[str, str] | None:
    """How a client's assistant message names the answer it repeats."""
    if message.tool_calls:
        return ("call", message.tool_calls[0].id)
    text = content_text(message.content)
    return ("text", text) if text else None


class TurnTokens:
    def __init__(self, tokenizer: Any, capacity: int = DEFAULT_CAPACITY) -> None:
        self._decode: Callable[[list[int]], str] = lambda ids: str(
            tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))
        self._turns: OrderedDict[tuple[str, str], GeneratedTurn] = OrderedDict()
        self.capacity = capacity

    def __len__(self) -> int:
        return len(self._turns)

    def remember(self, text: str, token_ids: Sequence[int], call_ids: Sequence[str], content: str | None) -> None:
        """One finished answer: the text the model wrote, its ids, and the tool call ids (or, with no
        call, the content) the client received for it."""
        key = ("call", call_ids[0]) if call_ids else ("text", content) if content else None
        if key is None or not text:
            return
        ids = spelling_ids(text, token_ids, self._decode)
        if ids is None:
            return
        self._turns[key] = GeneratedTurn(text, tuple(ids))
        self._turns.move_to_end(key)
        while len(self._turns) > self.capacity:
            self._turns.popitem(last=False)

    def remember_outputs(self, outs: Sequence[Any], call_ids: Sequence[str], content: str | None) -> None:
        """One choice's engine outputs (RequestOutput deltas, the last one finished), with the call
        ids or content its client received."""
        if not outs or getattr(outs[-1], "finish_reason", None) == "error":
            return
        text = "".join(o.new_text for o in outs)
        self.remember(text, [t for o in outs for t in o.new_token_ids], call_ids, content)

    def encode(self, text: str, messages: Sequence[Any], encode: Callable[[str], list[int]]) -> list[int]:
        """The prompt's ids: `encode` for the text, with each remembered answer among `messages`
        (found in order, each after the previous) as the ids the model generated for it."""
        ids: list[int] = []
        start = 0
        for message in messages:
            key = turn_key(message) if isinstance(message, AssistantMessage) else None
            turn = self._turns.get(key) if key is not None else None
            if key is None or turn is None:
                continue
            at = text.find(turn.text, start)
            if at < 0:
                continue
            self._turns.move_to_end(key)
            ids += encode(text[start:at]) if at > start else []
            ids += turn.token_ids
            start = at + len(turn.text)
        return ids + encode(text[start:]) if start < len(text) else ids
