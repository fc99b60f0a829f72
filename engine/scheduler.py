"""Token-budget scheduler: decodes and prefill chunks share each step; no prefill/decode phases.

Each step: running requests first (one token each, or their next prompt chunk), in arrival order;
if blocks run out, the most recently admitted running request is preempted (its blocks freed, its
tokens recomputed later) — it goes back to the front of the queue, so nobody starves. Then waiting
requests are admitted FCFS while budget, sequence slots and blocks last, starting from their
prefix-cache hits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sluicegate.engine.batch import ForwardBatch
from sluicegate.engine.config import SchedulerConfig
from sluicegate.engine.kv_cache.manager import KVCacheManager
from sluicegate.engine.request import Request, RequestStatus


@dataclass
class SchedulerOutput:
    batch: ForwardBatch
    scheduled: list[tuple[Request, int]] = field(default_factory=list)  # (request, num_new_tokens)
    preempted: list[Request] = field(default_factory=list)

    @property
    def sampling_requests(self) -> list[Request]:
        return [self.scheduled[i][0] for i in self.batch.sample_seqs]


class Scheduler:
    def __init__(self, config: SchedulerConfig, kv: KVCacheManager) -> None:
        self.config = config
        self.kv = kv
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []

    @property
    def num_unfinished(self) -> int:
        return len(self.waiting) + len(self.running)

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def remove(self, request: Request) -> None:
        """Take a finished or aborted request out of the queues and release its blocks."""
        if request in self.running:
            self.running.remove(request)
        elif request in self.waiting:
            self.waiting.remove(request)
        self.kv.free(request.request_id, request.params.cache_pin_seconds)

    def schedule(self) -> SchedulerOutput:
        budget = self.config.max_num_batched_tokens
        out = SchedulerOutput(ForwardBatch())
        budget = self._schedule_running(out, budget)
        if not out.preempted:
            self._schedule_waiting(out, budget)
        for request, num_new in out.scheduled:
            drafts = request.draft_token_ids
            out.batch.add(request.token_ids + drafts if drafts else request.token_ids, request.num_computed_tokens,
                          num_new, self.kv.block_table(request.request_id), len(drafts))
        return out

    def _chunk(self, request: Request, budget: int) -> int:
        remaining = request.num_tokens - request.num_computed_tokens
        return min(remaining, budget, self.config.long_prefill_token_threshold if remaining > 1 else 1)

    def _schedule_running(self, out: SchedulerOutput, budget: int) -> int:
        index = 0
        while index < len(self.running) and budget > 0:
            request = self.running[index]
            num_new = self._chunk(request, budget)
            if request.draft_token_ids:  # verify the drafts in this step if budget and free blocks allow
                with_drafts = num_new + len(request.draft_token_ids)
                if (num_new == 1 and budget >= with_drafts
                        and self.kv.allocate(request.request_id, request.num_computed_tokens + with_drafts)):
                    num_new = with_drafts
                else:  # drafts never cost another request its blocks
                    request.draft_token_ids = []
            while not self.kv.allocate(request.request_id, request.num_computed_tokens + num_new):
                victim = self.running.pop()
                self._preempt(victim)
                out.preempted.append(victim)
                if victim is request:
                    break
            else:
                out.scheduled.append((request, num_new))
                budget -= num_new
                index += 1
                continue
            break  # the request itself was preempted: the ones after it are gone too
        return budget

    def _preempt(self, request: Request) -> None:
        self.kv.free(request.request_id, request.params.cache_pin_seconds)
        request.draft_token_ids = []
        request.status = RequestStatus.PREEMPTED
        request.num_computed_tokens = 0
        request.num_preemptions += 1
        self.waiting.appendleft(request)

    def _schedule_waiting(self, out: SchedulerOutput, budget: int) -> None:
        skipped: list[Request] = []
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            request = self.waiting[0]
            if request.status is RequestStatus.WAITING_FOR_GRAMMAR:
                skipped.append(self.waiting.popleft())  # others keep flowing while it compiles
                continue
            cached = self.kv.find_cached_prefix(request.request_id, request.token_ids,
                                                block_keys=request.block_keys)
            num_cached = len(cached) * self.kv.block_size
            request.num_computed_tokens = num_cached
            num_new = self._chunk(request, budget)
            if not self.kv.allocate(request.request_id, num_cached + num_new, cached):
                request.num_computed_tokens = 0
                break
            if request.status is not RequestStatus.PREEMPTED:
                request.num_cached_tokens = num_cached
            self.waiting.popleft()
            request.status = RequestStatus.RUNNING
            self.running.append(request)
            out.scheduled.append((request, num_new))
            budget -= num_new
        self.waiting.extendleft(reversed(skipped))

    def update(self, out: SchedulerOutput, kept_drafts: dict[str, list[int]] | None = None) -> None:
        """After the forward: the scheduled tokens are in the cache; full blocks join the prefix cache.
        kept_drafts: per request that had drafts, the drafts verification kept; the cache holds the
        pending token and those, and the rest of the chunk's slots are written over later."""
        for request, num_new in out.scheduled:
            if request.is_finished:  # aborted while the forward ran; its blocks are already freed
                continue
            token_ids = request.token_ids
            if kept_drafts is not None and request.request_id in kept_drafts:
                kept = kept_drafts[request.request_id]
                num_new, token_ids = 1 + len(kept), request.token_ids + kept
            request.num_computed_tokens += num_new
            self.kv.commit(request.request_id, token_ids, request.num_computed_tokens,
                           block_keys=request.block_keys)
