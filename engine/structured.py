"""The engine's side of structured outputs: compile off the step loop, fill bitmask rows, advance.

The engine sees only Matcher (fill_bitmask / accept_token / is_terminated / rollback); compilation
runs on the grammar compiler's pool while the request waits in WAITING_FOR_GRAMMAR.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import torch

from sluicegate.engine.config import GrammarConfig
from sluicegate.engine.request import Request, RequestStatus
from sluicegate.engine.speculative import fill_draft_rows
from sluicegate.grammars.backend import Grammar, GrammarError, allocate_bitmask
from sluicegate.grammars.bitmask import fill_bitmasks
from sluicegate.grammars.specs import GrammarSpec, ToolCalls
from sluicegate.grammars.tool_budget import CallBudget, CallTracker, call_budget

log = logging.getLogger("sluicegate.engine")


class GrammarStage:
    def __init__(self, config: GrammarConfig, tokenizer: Any, vocab_size: int) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self._compiler: Any = None  # built on first use, or by warm_up() off the request path
        self._compiler_lock = threading.Lock()
        self._closed = False
        self._compile_times: deque[float] = deque(maxlen=4096)  # seconds, for the metrics scrape
        self._times_lock = threading.Lock()
        self._budgets: dict[ToolCalls, CallBudget | None] = {}  # per tool spec (a few tokenizer calls each)

    @property
    def compiler(self) -> Any:
        if self._compiler is None:
            with self._compiler_lock:  # warm_up() may be building it on another thread
                if self._compiler is None:
                    self._compiler = self._build_compiler()
        return self._compiler

    def _build_compiler(self) -> Any:
        from sluicegate.grammars.cache import GrammarCompiler

        return GrammarCompiler(self.config.backend, self.tokenizer, num_workers=self.config.num_compile_workers,
                               timeout_s=self.config.compile_timeout_s, max_entries=self.config.cache_max_entries,
                               vocab_size=self.vocab_size)

    def warm_up(self) -> None:
        """Build the compiler (the backend's token table: ~2 s for a 49k vocabulary) now, so a server's
        first constrained request does not pay for it on the event loop. A failure is left for
        that request to report."""
        with self._compiler_lock:
            if self._closed or self._compiler is not None:
                return
            try:
                self._compiler = self._build_compiler()
            except Exception as exc:  # noqa: BLE001 - the first request that needs it raises it properly
                log.warning("grammar backend not prepared ahead (%s); the first constrained request retries", exc)

    def submit(self, spec: GrammarSpec) -> Future[Grammar]:
        start = time.perf_counter()
        future: Future[Grammar] = self.compiler.submit(spec)
        future.add_done_callback(lambda _: self._record(time.perf_counter() - start))
        return future

    def _record(self, seconds: float) -> None:
        with self._times_lock:
            self._compile_times.append(seconds)

    def drain_compile_times(self) -> list[float]:
        """Compile durations (cache hits included, as ~0) since the last call."""
        with self._times_lock:
            times = list(self._compile_times)
            self._compile_times.clear()
        return times

    def poll(self, request: Request) -> BaseException | None:
        """If the request's grammar is ready, give it a matcher and make it schedulable.
        Returns the compile error, if compiling failed."""
        future = request.grammar_future
        assert future is not None
        if not future.done():
            return None
        try:
            grammar = future.result()
        except GrammarError as exc:
            return exc
        except Exception as exc:  # a backend bug must fail this request, not the engine
            return GrammarError(f"grammar compilation failed: {exc}")
        request.matcher = grammar.matcher() if grammar is not None else None
        spec = request.params.grammar
        budget = self.call_budget(spec) if isinstance(spec, ToolCalls) and request.matcher is not None else None
        request.call_tracker = CallTracker(budget) if budget is not None else None
        request.status = RequestStatus.WAITING
        return None

    def call_budget(self, spec: ToolCalls) -> CallBudget | None:
        if spec not in self._budgets:
            if len(self._budgets) >= 1024:
                self._budgets.clear()
            self._budgets[spec] = call_budget(spec, lambda text: self.tokenizer.encode(text, add_special_tokens=False))
        return self._budgets[spec]

    def close(self) -> None:
        with self._compiler_lock:
            self._closed = True
            if self._compiler is not None:
                self._compiler.close()

    def fill_bitmask(self, groups: Sequence[tuple[Request, int, int]], num_rows: int) -> torch.Tensor | None:
        """[num_rows, ceil(V/32)] int32 masks, or None when no request is constrained. groups:
        (request, first row, rows) as speculative.row_groups gives them; a request's rows after
        its first are masked by the grammar's state after each of its drafts."""
        constrained = [(r.matcher, first, n, r) for r, first, n in groups if r.matcher is not None]
        if not constrained:
            return None
        bitmask = allocate_bitmask(num_rows, self.vocab_size)  # unconstrained rows stay all-ones
        fill_bitmasks([m for m, _, _, _ in constrained], bitmask, [first for _, first, _, _ in constrained])
        for matcher, first, n, request in constrained:
            if n > 1:
                fill_draft_rows(matcher, bitmask, first, request.draft_token_ids)
        return bitmask
