"""Compiled-grammar cache and compile pool: the engine never compiles on its step loop.

`GrammarCompiler.submit(spec)` returns a Future at once; the request waits (WAITING_FOR_GRAMMAR)
while a worker thread compiles (llguidance and outlines-core release the GIL in their native
builds). Results are cached by (backend, tokenizer fingerprint, spec) in a bounded LRU; failures
are not cached. A compile that runs past `timeout_s` fails its future with GrammarError; the
worker thread cannot be interrupted, so it finishes in the background and its result is dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from sluicegate.grammars.backend import Grammar, GrammarBackend, GrammarError
from sluicegate.grammars.specs import GrammarSpec
from sluicegate.grammars.vocab import tokenizer_fingerprint


class GrammarCompiler:
    def __init__(
        self,
        backend_name: str,
        tokenizer: Any,
        num_workers: int = 2,
        timeout_s: float = 10.0,
        max_entries: int = 512,
        vocab_size: int | None = None,
    ) -> None:
        from sluicegate.grammars import get_backend  # the package's registry of backends

        self.backend: GrammarBackend = get_backend(backend_name, tokenizer, vocab_size)
        self.timeout_s = timeout_s
        self.max_entries = max_entries
        self._key_prefix = (backend_name, tokenizer_fingerprint(tokenizer))
        self._pool = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="grammar-compile")
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, Future[Grammar]] = OrderedDict()

    def submit(self, spec: GrammarSpec) -> Future[Grammar]:
        """A future of the compiled grammar; raises GrammarError (through the future) on failure."""
        key = (*self._key_prefix, spec)
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                return cached
            outer: Future[Grammar] = Future()
            self._entries[key] = outer
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        inner = self._pool.submit(self.backend.compile, spec)
        timer = threading.Timer(self.timeout_s, self._expire, (key, outer))
        timer.daemon = True
        timer.start()
        inner.add_done_callback(lambda done: self._settle(key, outer, done, timer))
        return outer

    def compile_sync(self, spec: GrammarSpec) -> Grammar:
        return self.submit(spec).result()

    def cached(self, spec: GrammarSpec) -> bool:
        with self._lock:
            return (*self._key_prefix, spec) in self._entries

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _settle(self, key: Hashable, outer: Future[Grammar], done: Future[Grammar], timer: threading.Timer) -> None:
        timer.cancel()
        if outer.done():  # already expired
            return
        error = done.exception()
        if error is None:
            outer.set_result(done.result())
            return
        self._forget(key, outer)
        if not isinstance(error, GrammarError):  # a backend crash is still the client's 400, named
            error = GrammarError(f"grammar compile failed: {type(error).__name__}: {error}")
        outer.set_exception(error)

    def _expire(self, key: Hashable, outer: Future[Grammar]) -> None:
        self._forget(key, outer)
        if not outer.done():
            try:
                outer.set_exception(GrammarError(f"grammar compile exceeded {self.timeout_s:g} s"))
            except Exception:  # raced with _settle: the result won
                pass

    def _forget(self, key: Hashable, outer: Future[Grammar]) -> None:
        with self._lock:
            if self._entries.get(key) is outer:
                del self._entries[key]
