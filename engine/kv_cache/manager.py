"""KVCacheManager: which blocks each request holds, prefix-cache lookups, and commits.

The scheduler talks to it in request ids and token counts; it hands back block-id lists (the value
the runner needs), never the pool's insides.
"""

from __future__ import annotations

from collections.abc import Sequence

from sluicegate.engine.kv_cache.block_pool import BlockKey, BlockPool, KVBlock, hash_block


class KVCacheManager:
    def __init__(self, num_blocks: int, block_size: int, enable_caching: bool = True,
                 max_pinned_fraction: float = 0.5) -> None:
        self.block_size = block_size
        self.pool = BlockPool(num_blocks, enable_caching, max_pinned_fraction)
        self.enable_caching = enable_caching
        self._blocks: dict[str, list[KVBlock]] = {}
        self._keys: dict[str, list[BlockKey]] = {}  # key chain of the request's tokens (a prefix of it)
        self._num_registered: dict[str, int] = {}  # leading blocks already in the prefix cache

    # ---- queries -------------------------------------------------------------------------------
    def block_table(self, request_id: str) -> list[int]:
        return [b.block_id for b in self._blocks.get(request_id, ())]

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    @property
    def usage(self) -> float:
        return self.pool.usage

    @property
    def prefix_hit_rate(self) -> float:
        return self.pool.num_hits / self.pool.num_queries if self.pool.num_queries else 0.0

    def find_cached_prefix(self, request_id: str, token_ids: Sequence[int], extra: tuple[object, ...] = (),
                           block_keys: list[BlockKey] | None = None) -> list[KVBlock]:
        """Longest run of cached full blocks at the start of token_ids, never covering the last
        token (its logits must be computed). Remembers the keys for later commits.

        block_keys is the caller's cache of token_ids' key chain (Request.block_keys): keys
        missing from it are hashed and appended, the ones there are reused, so a request that
        waits for blocks over many steps hashes each block once. It must only ever hold keys of
        these token_ids with this extra.
        """
        keys = [] if block_keys is None else block_keys
        hits: list[KVBlock] = []
        max_blocks = (len(token_ids) - 1) // self.block_size
        if self.enable_caching:
            for i in range(max_blocks):
                block = self.pool.lookup(self._key(keys, i, token_ids, extra))
                if block is None:
                    break
                hits.append(block)
        self._keys[request_id] = keys
        self._num_registered[request_id] = len(hits)  # hits are registered already
        self.pool.num_queries += max(max_blocks, 0)
        self.pool.num_hits += len(hits)
        return hits

    def _key(self, keys: list[BlockKey], index: int, token_ids: Sequence[int],
             extra: tuple[object, ...]) -> BlockKey:
        """keys[index], hashing it (and any missing before it) on first need."""
        while len(keys) <= index:
            i = len(keys)
            parent = keys[-1].hash_value if keys else None
            keys.append(hash_block(parent, tuple(token_ids[i * self.block_size:(i + 1) * self.block_size]), extra))
        return keys[index]

    # ---- mutations -----------------------------------------------------------------------------
    def allocate(self, request_id: str, num_tokens_after: int, cached: Sequence[KVBlock] = ()) -> bool:
        """Make the request hold blocks for num_tokens_after tokens, starting from `cached` hits
        when it holds none yet. False (and nothing changed) when the pool cannot cover it."""
        held = self._blocks.get(request_id, [])
        num_new = self.num_blocks_for(num_tokens_after) - len(held) - len(cached)
        reclaimed = sum(1 for b in cached if b.ref_count == 0)  # cached hits now sitting in the free queue
        if max(num_new, 0) + reclaimed > self.pool.num_free_blocks:
            return False
        if cached:
            assert not held, "cached prefix blocks are only taken at a request's first allocation"
            self.pool.touch(cached)
            held = list(cached)
        if num_new > 0:
            held = held + self.pool.allocate(num_new)
        self._blocks[request_id] = held
        return True

    def commit(self, request_id: str, token_ids: Sequence[int], num_computed: int,
               extra: tuple[object, ...] = (), block_keys: list[BlockKey] | None = None) -> None:
        """Register the request's blocks that became full now that num_computed tokens are in the
        cache. block_keys: as in find_cached_prefix (keys already there are not hashed again)."""
        if not self.enable_caching:
            return
        keys = self._keys.setdefault(request_id, [] if block_keys is None else block_keys)
        blocks = self._blocks[request_id]
        start = self._num_registered.get(request_id, 0)
        num_full = num_computed // self.block_size
        for i in range(start, num_full):
            self.pool.register(blocks[i], self._key(keys, i, token_ids, extra))
        self._num_registered[request_id] = max(start, num_full)

    def free(self, request_id: str, pin_seconds: float = 0.0) -> None:
        """Release a request's blocks. Tail blocks are freed first so they are evicted before the
        shared prefix they extend. pin_seconds > 0 keeps its cached blocks in the protected tier."""
        blocks = self._blocks.pop(request_id, [])
        self._keys.pop(request_id, None)
        self._num_registered.pop(request_id, None)
        self.pool.free(reversed(blocks), pin_seconds)

    def holds(self, request_id: str) -> bool:
        return request_id in self._blocks

    def check_integrity(self, live_request_ids: set[str] | None = None) -> None:
        """free + in use == total, every ref count equals the references live requests hold."""
        if live_request_ids is not None:
            stray = set(self._blocks) - live_request_ids
            assert not stray, f"blocks held by finished requests: {sorted(stray)}"
        refs: dict[int, int] = {}
        for blocks in self._blocks.values():
            for b in blocks:
                refs[b.block_id] = refs.get(b.block_id, 0) + 1
        self.pool.check_integrity(refs)
