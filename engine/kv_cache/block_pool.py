"""BlockPool: KV blocks, their ref counts, the prefix-cache index and the LRU free queue.

A block is "cached" when it is full and its content hash is registered. Freed blocks keep their
hash until they are handed out again, so the free queue *is* the cache: allocation takes the least
recently freed block first and evicts its hash at that moment.

Pinned prefixes (a request's `prompt_cache_retention="24h"`): the blocks such a request frees go to
a second, protected free queue. Allocation takes protected blocks only once every unprotected free
block is gone, so a pinned prefix outlives ordinary cache churn, yet pinning never makes a live
request wait. A pin lapses after its retention without use, and at most `max_pinned_fraction` of
the pool stays protected (past that, the oldest pins fall back to the unprotected queue's head).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sluicegate.engine.kv_cache.events import KVEventLog

PIN_SCAN_INTERVAL_S = 60.0  # lapsed pins are found within this long (a scan walks the protected queue)


@dataclass(frozen=True)
class BlockKey:
    """Identity of a full block's content: the chain hash plus what it covers (collision guard)."""

    hash_value: int
    parent_hash: int | None
    token_ids: tuple[int, ...]
    extra: tuple[object, ...] = ()


def hash_block(parent_hash: int | None, token_ids: tuple[int, ...], extra: tuple[object, ...] = ()) -> BlockKey:
    """A block's key chains its parent's, so equal keys mean equal whole prefixes."""
    return BlockKey(hash((parent_hash, token_ids, extra)), parent_hash, token_ids, extra)


@dataclass(eq=False)
class KVBlock:
    block_id: int
    ref_count: int = 0
    key: BlockKey | None = None
    pinned_until: float = 0.0  # clock time until which the block is protected when free (0: never)
    # Free-queue links (only meaningful while ref_count == 0).
    prev: KVBlock | None = field(default=None, repr=False)
    next: KVBlock | None = field(default=None, repr=False)


class FreeBlockQueue:
    """Doubly linked list of free blocks: O(1) append, pop-oldest and remove-from-middle."""

    def __init__(self, blocks: Iterable[KVBlock]) -> None:
        self._head = KVBlock(-1)  # sentinels
        self._tail = KVBlock(-1)
        self._head.next, self._tail.prev = self._tail, self._head
        self.num_free = 0
        for block in blocks:
            self.append(block)

    def append(self, block: KVBlock) -> None:
        last = self._tail.prev
        assert last is not None
        block.prev, block.next = last, self._tail
        last.next = block
        self._tail.prev = block
        self.num_free += 1

    def appendleft(self, block: KVBlock) -> None:
        first = self._head.next
        assert first is not None
        block.prev, block.next = self._head, first
        first.prev = block
        self._head.next = block
        self.num_free += 1

    def popleft(self) -> KVBlock:
        block = self._head.next
        if block is None or block is self._tail:
            raise RuntimeError("no free KV blocks")
        self.remove(block)
        return block

    def remove(self, block: KVBlock) -> None:
        assert block.prev is not None and block.next is not None, "block is not in the free queue"
        block.prev.next, block.next.prev = block.next, block.prev
        block.prev = block.next = None
        self.num_free -= 1

    def __iter__(self):  # oldest first
        node = self._head.next
        while node is not None and node is not self._tail:
            yield node
            node = node.next


class BlockPool:
    """Owns every KV block. Block 0 is never handed out: it pads block tables."""

    def __init__(self, num_blocks: int, enable_caching: bool = True, max_pinned_fraction: float = 0.5,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if num_blocks < 2:
            raise ValueError(f"the KV cache needs at least 2 blocks, got {num_blocks}")
        if not 0.0 <= max_pinned_fraction <= 1.0:
            raise ValueError(f"max_pinned_fraction must be in [0, 1], got {max_pinned_fraction}")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        self.blocks[0].ref_count = 1  # the null block, never handed out
        self.free_queue = FreeBlockQueue(self.blocks[1:])
        self.pinned_queue = FreeBlockQueue(())  # free blocks of pinned prefixes, evicted last
        self.max_pinned_blocks = int(max_pinned_fraction * (num_blocks - 1))
        self._clock = clock
        self._next_pin_scan = 0.0
        self.cached: dict[int, KVBlock] = {}  # hash_value -> block
        self.events: KVEventLog | None = None  # set when KV events are published (events.py)
        self.num_hits = 0
        self.num_queries = 0

    @property
    def num_free_blocks(self) -> int:
        """Blocks an allocation can take: unprotected and protected free blocks alike."""
        return self.free_queue.num_free + self.pinned_queue.num_free

    @property
    def num_pinned_free_blocks(self) -> int:
        return self.pinned_queue.num_free

    @property
    def usage(self) -> float:
        usable = self.num_blocks - 1
        return 1.0 - self.num_free_blocks / usable

    def lookup(self, key: BlockKey) -> KVBlock | None:
        """The cached block holding exactly this content, if any (token ids compared, not trusted)."""
        block = self.cached.get(key.hash_value)
        if block is None or block.key != key:
            return None
        return block

    def allocate(self, n: int) -> list[KVBlock]:
        if n > self.num_free_blocks:
            raise RuntimeError(f"asked for {n} KV blocks, {self.num_free_blocks} free")
        self._unpin_lapsed()
        out = []
        for _ in range(n):
            if self.free_queue.num_free:
                block = self.free_queue.popleft()
            else:  # every unprotected block is taken: a pinned prefix gives way to a live request
                block = self.pinned_queue.popleft()
                block.pinned_until = 0.0
            self._evict(block)
            block.ref_count = 1
            out.append(block)
        return out

    def touch(self, blocks: Iterable[KVBlock]) -> None:
        """Take a reference on cached blocks a new request reuses (pulling free ones out of the queue)."""
        for block in blocks:
            if block.ref_count == 0:
                self._queue_of(block).remove(block)
            block.ref_count += 1

    def free(self, blocks: Iterable[KVBlock], pin_seconds: float = 0.0) -> None:
        """Drop one reference each; blocks reaching zero join a free queue's tail in the given order.

        pin_seconds > 0 protects the cached ones for that long from now (a pin already longer is
        kept); a block still pinned from an earlier request stays protected until its pin lapses."""
        now = self._clock()
        for block in blocks:
            assert block.ref_count > 0, f"double free of block {block.block_id}"
            block.ref_count -= 1
            if block.ref_count > 0:
                continue
            if block.key is None or not self.enable_caching:
                self._evict(block)
                block.pinned_until = 0.0  # nothing cached in it is left to protect
            elif pin_seconds > 0:
                block.pinned_until = max(block.pinned_until, now + pin_seconds)
            if block.pinned_until > now:
                self.pinned_queue.append(block)
            else:
                block.pinned_until = 0.0
                self.free_queue.append(block)
        while self.pinned_queue.num_free > self.max_pinned_blocks:
            self._unpin(self.pinned_queue.popleft())

    def _queue_of(self, block: KVBlock) -> FreeBlockQueue:
        return self.pinned_queue if block.pinned_until else self.free_queue

    def _unpin(self, block: KVBlock) -> None:
        """A free block's pin is gone: it becomes the next unprotected block to evict."""
        block.pinned_until = 0.0
        self.free_queue.appendleft(block)

    def _unpin_lapsed(self) -> None:
        now = self._clock()
        if now < self._next_pin_scan:
            return
        self._next_pin_scan = now + PIN_SCAN_INTERVAL_S
        for block in [b for b in self.pinned_queue if b.pinned_until <= now]:
            self.pinned_queue.remove(block)
            self._unpin(block)

    def register(self, block: KVBlock, key: BlockKey) -> None:
        """Record a just-filled block under its key. A duplicate key keeps the first block."""
        if not self.enable_caching or block.key is not None:
            return
        if key.hash_value in self.cached:
            return
        block.key = key
        self.cached[key.hash_value] = block
        if self.events is not None:
            self.events.stored(key.hash_value, key.parent_hash, key.token_ids)

    def _evict(self, block: KVBlock) -> None:
        if block.key is not None:
            if self.cached.get(block.key.hash_value) is block:
                del self.cached[block.key.hash_value]
                if self.events is not None:
                    self.events.removed(block.key.hash_value)
            block.key = None

    def reset_prefix_cache(self) -> None:
        for block in list(self.pinned_queue):
            self.pinned_queue.remove(block)
            self._unpin(block)
        for block in list(self.cached.values()):
            if block.ref_count == 0:
                self._evict(block)

    def check_integrity(self, expected_refs: dict[int, int]) -> None:
        """Every block is free xor referenced; ref counts equal what live requests hold."""
        free_ids = [b.block_id for b in self.free_queue] + [b.block_id for b in self.pinned_queue]
        assert len(free_ids) == len(set(free_ids)) == self.num_free_blocks, "free queue corrupted"
        for block in self.blocks[1:]:
            want = expected_refs.get(block.block_id, 0)
            assert block.ref_count == want, (
                f"block {block.block_id}: ref_count {block.ref_count}, live requests hold {want}")
            in_free = block.block_id in set(free_ids) if want == 0 else False
            assert (want == 0) == in_free or want > 0, f"block {block.block_id} leaked (ref 0, not free)"
        assert set(free_ids) == {b.block_id for b in self.blocks[1:] if b.ref_count == 0}, "leaked blocks"
        assert all(b.pinned_until > 0 for b in self.pinned_queue), "unpinned block in the protected queue"
        assert all(b.pinned_until == 0 for b in self.free_queue), "pinned block in the unprotected queue"
        for hash_value, block in self.cached.items():
            assert block.key is not None and block.key.hash_value == hash_value, "cache index corrupted"
