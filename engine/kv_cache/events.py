"""KV-cache events: which blocks the prefix cache holds, as they change, for a router outside.

A router that knows each replica's cached blocks can send a request where its prefix already is
(llm-d's KV-cache indexer, NVIDIA Dynamo's KV router). Events follow vLLM's kv_events shapes, so
those consumers read them unchanged:
    BlockStored(block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium)
    BlockRemoved(block_hashes, medium)
    AllBlocksCleared()
The pool records events only when a publisher is attached; the engine drains them after each step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MEDIUM = "GPU"  # vLLM's name for the engine's own KV pool, whatever the device (consumers key on it)


@dataclass(frozen=True)
class BlockStored:
    block_hashes: tuple[int, ...]
    parent_block_hash: int | None
    token_ids: tuple[int, ...]
    block_size: int

    def as_array(self) -> list[object]:
        """msgspec's tagged array_like layout, as vLLM's KVEventBatch encodes it."""
        return ["BlockStored", list(self.block_hashes), self.parent_block_hash, list(self.token_ids),
                self.block_size, None, MEDIUM]


@dataclass(frozen=True)
class BlockRemoved:
    block_hashes: tuple[int, ...]

    def as_array(self) -> list[object]:
        return ["BlockRemoved", list(self.block_hashes), MEDIUM]


@dataclass(frozen=True)
class AllBlocksCleared:
    def as_array(self) -> list[object]:
        return ["AllBlocksCleared"]


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass
class KVEventLog:
    """Events since the last drain, in order."""

    block_size: int
    events: list[KVEvent] = field(default_factory=list)

    def stored(self, hash_value: int, parent: int | None, token_ids: tuple[int, ...]) -> None:
        self.events.append(BlockStored((hash_value,), parent, token_ids, self.block_size))

    def removed(self, hash_value: int) -> None:
        self.events.append(BlockRemoved((hash_value,)))

    def drain(self) -> list[KVEvent]:
        events, self.events = self.events, []
        return events
