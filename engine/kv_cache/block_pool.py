"""BlockPool: KV blocks, their ref counts, the prefix-cache index and the LRU free queue.

A block is "cached" when it is full and its content hash is registered. Freed blocks keep their
hash until they are handed out again, so the free queue *is* the cache: allocation takes the least
recently freed block first and evicts its hash at that moment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


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

    def __init__(self, num_blocks: int, enable_caching: bool = True) -> None:
        if num_blocks < 2:
            raise ValueError(f"the KV cache needs at least 2 blocks, got {num_blocks}")
        self.num_blocks = num_blocks
        self.enable_caching = enable_caching
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        self.blocks[0].ref_count = 1  # the null block, pinned
        self.free_queue = FreeBlockQueue(self.blocks[1:])
        self.cached: dict[int, KVBlock] = {}  # hash_value -> block
        self.num_hits = 0
        self.num_queries = 0

    @property
    def num_free_blocks(self) -> int:
        return self.free_queue.num_free

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
        out = []
        for _ in range(n):
            block = self.free_queue.popleft()
            self._evict(block)
            block.ref_count = 1
            out.append(block)
        return out

    def touch(self, blocks: Iterable[KVBlock]) -> None:
        """Take a reference on cached blocks a new request reuses (pulling free ones out of the queue)."""
        for block in blocks:
            if block.ref_count == 0:
                self.free_queue.remove(block)
            block.ref_count += 1

    def free(self, blocks: Iterable[KVBlock]) -> None:
        """Drop one reference each; blocks reaching zero join the free queue's tail in the given order."""
        for block in blocks:
            assert block.ref_count > 0, f"double free of block {block.block_id}"
            block.ref_count -= 1
            if block.ref_count == 0:
                if block.key is None or not self.enable_caching:
                    self._evict(block)
                self.free_queue.append(block)

    def register(self, block: KVBlock, key: BlockKey) -> None:
        """Record a just-filled block under its key. A duplicate key keeps the first block."""
        if not self.enable_caching or block.key is not None:
            return
        if key.hash_value in self.cached:
            return
        block.key = key
        self.cached[key.hash_value] = block

    def _evict(self, block: KVBlock) -> None:
        if block.key is not None:
            if self.cached.get(block.key.hash_value) is block:
                del self.cached[block.key.hash_value]
            block.key = None

    def reset_prefix_cache(self) -> None:
        for block in list(self.cached.values()):
            if block.ref_count == 0:
                self._evict(block)

    def check_integrity(self, expected_refs: dict[int, int]) -> None:
        """Every block is free xor referenced; ref counts equal what live requests hold."""
        free_ids = [b.block_id for b in self.free_queue]
        assert len(free_ids) == len(set(free_ids)) == self.num_free_blocks, "free queue corrupted"
        for block in self.blocks[1:]:
            want = expected_refs.get(block.block_id, 0)
            assert block.ref_count == want, (
                f"block {block.block_id}: ref_count {block.ref_count}, live requests hold {want}")
            in_free = block.block_id in set(free_ids) if want == 0 else False
            assert (want == 0) == in_free or want > 0, f"block {block.block_id} leaked (ref 0, not free)"
        assert set(free_ids) == {b.block_id for b in self.blocks[1:] if b.ref_count == 0}, "leaked blocks"
        for hash_value, block in self.cached.items():
            assert block.key is not None and block.key.hash_value == hash_value, "cache index corrupted"
