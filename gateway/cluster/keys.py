"""A request's RouteKey, computed by the ingress from its path, headers and JSON body.

Order: the OpenAI `prompt_cache_key` field, else the `x-session-id` header, else the hash chain of
the rendered prompt's leading full blocks. The chain uses the engine's own block hash
(engine/kv_cache/block_pool.hash_block) over the same token ids the replica will see, so equal
chains mean equal cached blocks. Python's hash of int tuples is the same in every process (only
str and bytes hashing is salted), so the ingress and the replicas agree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from sluicegate.engine.kv_cache.block_pool import hash_block
from sluicegate.gateway.cluster.routing import RouteKey

SESSION_HEADER = "x-session-id"
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"


def block_chain(token_ids: Sequence[int], block_size: int, max_blocks: int) -> tuple[int, ...]:
    """Chain hashes of the leading full blocks (a partial last block is never cached, so never keyed)."""
    chain: list[int] = []
    parent: int | None = None
    for i in range(min(len(token_ids) // block_size, max_blocks)):
        parent = hash_block(parent, tuple(token_ids[i * block_size:(i + 1) * block_size])).hash_value
        chain.append(parent)
    return tuple(chain)


class PromptHasher:
    """Renders and tokenizes a request's prompt as the replica will, and hashes its leading blocks."""

    def __init__(self, renderer: Any, block_size: int, max_blocks: int) -> None:
        self.renderer = renderer  # gateway.chat_format.ChatRenderer of the served model
        self.block_size = block_size
        self.max_blocks = max_blocks

    def prompt_ids(self, path: str, body: Mapping[str, Any]) -> list[int] | None:
        if path == CHAT_PATH:
            from sluicegate.gateway.protocol import ChatCompletionRequest

            request = ChatCompletionRequest.model_validate(body)
            text = self.renderer.render(request.messages, request.tools, request.chat_template_kwargs)
            ids: list[int] = self.renderer.encode(text)
            return ids
        if path == COMPLETIONS_PATH:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
                prompt = prompt[0]  # several prompts: the first one places the request
            if isinstance(prompt, str):
                return list(self.renderer.tokenizer(prompt)["input_ids"])  # as routes/completions.py tokenizes
            if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
                return prompt
        return None

    def chain(self, path: str, body: Mapping[str, Any]) -> tuple[int, ...]:
        ids = self.prompt_ids(path, body)
        return block_chain(ids, self.block_size, self.max_blocks) if ids else ()


def route_key(path: str, headers: Mapping[str, str], body: bytes, hasher: PromptHasher | None) -> RouteKey:
    """The request's key; an empty key (route by load alone) when the body is not a generation
    request or cannot be read: the replica then answers with the proper error."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        cache_key = payload.get("prompt_cache_key")
        if isinstance(cache_key, str) and cache_key:
            return RouteKey(session=f"cache:{cache_key}")
    session = headers.get(SESSION_HEADER)
    if session:
        return RouteKey(session=f"session:{session}")
    if hasher is None or not isinstance(payload, dict):
        return RouteKey()
    try:
        return RouteKey(blocks=hasher.chain(path, payload))
    except Exception:  # a body the replica will refuse (bad messages, template error): no key
        return RouteKey()
