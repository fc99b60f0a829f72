"""LLMEngine: add_request / step / abort. One step reads as schedule → execute → bitmask → sample → update."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass

import torch

from sluicegate.engine.attention.base import select_backend
from sluicegate.engine.config import (
    EngineConfig,
    kv_cache_bytes,
    resolve_chat_template,
    resolve_device,
    resolve_dtype,
)
from sluicegate.engine.detokenizer import IncrementalDetokenizer
from sluicegate.engine.host_to_device import to_device
from sluicegate.engine.kernels import cpu_ops
from sluicegate.engine.kv_cache.events import KVEventLog
from sluicegate.engine.kv_cache.manager import KVCacheManager
from sluicegate.engine.kv_events_publisher import ZmqKVEventPublisher
from sluicegate.engine.malloc_tuning import keep_freed_memory
from sluicegate.engine.models.llama import LlamaModel
from sluicegate.engine.models.loader import LoadedModel, load_model
from sluicegate.engine.models.quantized import quantized_source
from sluicegate.engine.openmp_workers import release_openmp_workers
from sluicegate.engine.outputs import RequestOutput, TokenLogprob
from sluicegate.engine.params import SamplingParams
from sluicegate.engine.request import Request, RequestStatus
from sluicegate.engine.runner import ModelRunner, kv_bytes_per_block
from sluicegate.engine.sampler import SamplerOutput, sample
from sluicegate.engine.sampling_batch import build_sampling_tensors
from sluicegate.engine.scheduler import Scheduler
from sluicegate.engine.speculative import NgramIndex, check_drafts, emitted_tokens, row_groups
from sluicegate.engine.structured import GrammarStage
from sluicegate.engine.validation import resolve_max_tokens
from sluicegate.grammars.backend import GrammarError

log = logging.getLogger("sluicegate.engine")


class QueueFullError(RuntimeError):
    """Too many requests are queued; retry later (HTTP 429 / RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True)
class EngineStats:
    num_running: int
    num_waiting: int
    kv_usage: float
    kv_pinned_free_blocks: int  # free blocks of pinned prefixes (prompt_cache_retention="24h")
    prefix_cache_hit_rate: float
    prompt_tokens_total: int
    cached_tokens_total: int
    generation_tokens_total: int
    num_preemptions_total: int
    forced_tokens_total: int  # output tokens the grammar forced (appended without sampling)
    forward_steps_total: int
    draft_tokens_total: int  # speculative drafts verified
    accepted_draft_tokens_total: int  # … and kept
    kv_block_size: int  # tokens per KV block
    kv_num_blocks: int  # blocks in the pool (the null block included)


class LLMEngine:
    def __init__(self, config: EngineConfig, loaded: LoadedModel | None = None) -> None:
        self.config = config
        self.device = resolve_device(config.model.device)
        self.dtype = resolve_dtype(config.model.dtype, self.device)
        if config.num_threads and self.device.type == "cpu":
            torch.set_num_threads(config.num_threads)
        if self.device.type == "cpu":
            keep_freed_memory()
        chat_template = resolve_chat_template(config.model.chat_template)  # a bad path fails before loading
        loaded = loaded or load_model(config.model.model, self.dtype, self.device)
        self.arch = loaded.arch
        self.tokenizer = loaded.tokenizer
        self.chat_template = chat_template or loaded.chat_template
        self.model_name = loaded.name
        self.vocab_size = loaded.arch.vocab_size
        self.eos_token_ids = tuple(loaded.arch.eos_token_ids)
        cpu_kernels = self._cpu_kernels(config)
        self.backend = select_backend(config.attention_backend, self.device, cpu_kernels)
        block_size = config.cache.block_size
        num_blocks = config.cache.num_blocks or max(
            2, kv_cache_bytes(config.cache, self.device) // kv_bytes_per_block(self.arch, block_size, self.dtype))
        capacity = (num_blocks - 1) * block_size
        self.max_model_len = min(config.model.max_model_len or loaded.max_model_len, capacity)
        model = LlamaModel(self.arch, loaded.weights, self.backend, max_positions=self.max_model_len,
                           quantized=quantized_source(loaded.folder, int4=config.int4_decode,
                                                      int8=cpu_kernels),
                           cpu_kernels=cpu_kernels)
        self.runner = ModelRunner(model, self.backend, num_blocks, block_size)
        if config.cuda_graphs and self.device.type == "cuda":
            self.runner.capture_decode_graphs(config.scheduler.max_num_seqs, self.max_model_len)
        self.kv = KVCacheManager(num_blocks, block_size, config.cache.enable_prefix_caching,
                                 config.cache.max_pinned_fraction)
        self.scheduler = Scheduler(config.scheduler, self.kv)
        self.kv_events: ZmqKVEventPublisher | None = None
        if config.kv_events.endpoint:
            self.kv.pool.events = KVEventLog(block_size)
            self.kv_events = ZmqKVEventPublisher(config.kv_events.endpoint, config.kv_events.topic)
        self.grammar = GrammarStage(config.grammar, self.tokenizer, self.vocab_size)
        self.requests: dict[str, Request] = {}
        self._generator = torch.Generator(device=self.device).manual_seed(config.model.seed)
        self._lock = threading.Lock()  # add/abort may come from other threads than step()
        self._finished_outside_step: list[RequestOutput] = []
        self._totals = {"prompt": 0, "cached": 0, "generation": 0, "preemptions": 0, "forced": 0, "steps": 0,
                        "drafted": 0, "accepted": 0}
        if self.device.type == "cpu":  # loading ran parallel regions here; stepping may be another thread's
            release_openmp_workers()

    # ---- public API ----------------------------------------------------------------------------
    def add_request(self, prompt_token_ids: list[int], params: SamplingParams,
                    request_id: str | None = None) -> str:
        max_tokens = resolve_max_tokens(prompt_token_ids, params, self.max_model_len, self.vocab_size)
        request_id = request_id or uuid.uuid4().hex
        with self._lock:
            if len(self.scheduler.waiting) >= self.config.scheduler.max_waiting:
                raise QueueFullError(f"{len(self.scheduler.waiting)} requests are already queued")
            if request_id in self.requests:
                raise ValueError(f"request id {request_id!r} is already in use")
            request = Request(
                request_id=request_id, prompt_token_ids=list(prompt_token_ids), params=params,
                max_tokens=max_tokens, eos_token_ids=frozenset(self.eos_token_ids),
                detokenizer=IncrementalDetokenizer(self.tokenizer, params.stop,
                                                   params.include_stop_str_in_output, params.skip_special_tokens),
            )
            if params.seed is not None:
                request.generator = torch.Generator(device=self.device).manual_seed(params.seed)
            if params.grammar is not None:
                request.grammar_future = self.grammar.submit(params.grammar)
                request.status = RequestStatus.WAITING_FOR_GRAMMAR
            self.requests[request_id] = request
            self.scheduler.add(request)
        return request_id

    def abort(self, request_id: str) -> None:
        with self._lock:
            request = self.requests.get(request_id)
            if request is not None:
                self._finish(request, RequestStatus.FINISHED_ABORTED)
                self._finished_outside_step.append(self._output(request))

    def has_unfinished(self) -> bool:
        return bool(self.requests) or bool(self._finished_outside_step)

    def step(self) -> list[RequestOutput]:
        with self._lock:
            outputs = self._finished_outside_step
            self._finished_outside_step = []
            outputs += self._poll_grammars()
            if self.config.speculative.method == "ngram":
                for request in self.scheduler.running:
                    request.draft_token_ids = self._drafts(request)
            sched = self.scheduler.schedule()
            if sched.batch.num_tokens == 0:
                return outputs
            self._totals["preemptions"] += len(sched.preempted)
            self._totals["steps"] += 1
        logits = self.runner.run(sched.batch)  # [S, V]; add/abort may proceed meanwhile
        with self._lock:
            sampling = sched.sampling_requests  # one entry per sampled row (several for drafts)
            groups = row_groups(sampling)  # (request, first row, rows)
            bitmask = self.grammar.fill_bitmask(groups, len(sampling))  # host [S, W] int32, or None
            if bitmask is not None:
                bitmask = to_device(bitmask, self.device)
            tensors = build_sampling_tensors(sampling, self.vocab_size, self.device, self._generator, bitmask)
            sampled = sample(logits, tensors)
            token_ids = sampled.token_ids.tolist()
            emitted = [emitted_tokens(token_ids[first:first + n], r.draft_token_ids) for r, first, n in groups]
            kept = {r.request_id: r.draft_token_ids[:len(e) - 1] for (r, _, n), e in zip(groups, emitted) if n > 1}
            self.scheduler.update(sched, kept)
            outputs += self._process(groups, emitted, sampled)
            if self.kv_events is not None and self.kv.pool.events is not None:
                self.kv_events.publish(self.kv.pool.events.drain())
        return outputs

    def close(self) -> None:
        """Stop the threads the engine owns beyond the step loop (KV-event publishing)."""
        if self.kv_events is not None:
            self.kv_events.close()
            self.kv_events = None

    def fail_all(self, message: str) -> list[RequestOutput]:
        """Finish every in-flight request with an error (after an unexpected step failure)."""
        with self._lock:
            outputs = []
            for request in list(self.requests.values()):
                request.error = message
                self._finish(request, RequestStatus.FINISHED_ERROR)
                outputs.append(self._output(request))
            return outputs

    def stats(self) -> EngineStats:
        return EngineStats(
            num_running=len(self.scheduler.running), num_waiting=len(self.scheduler.waiting),
            kv_usage=self.kv.usage, kv_pinned_free_blocks=self.kv.pool.num_pinned_free_blocks,
            prefix_cache_hit_rate=self.kv.prefix_hit_rate,
            prompt_tokens_total=self._totals["prompt"], cached_tokens_total=self._totals["cached"],
            generation_tokens_total=self._totals["generation"],
            num_preemptions_total=self._totals["preemptions"],
            forced_tokens_total=self._totals["forced"], forward_steps_total=self._totals["steps"],
            draft_tokens_total=self._totals["drafted"], accepted_draft_tokens_total=self._totals["accepted"],
            kv_block_size=self.kv.block_size, kv_num_blocks=self.kv.pool.num_blocks)

    def _cpu_kernels(self, config: EngineConfig) -> bool:
        """Whether this engine uses sluicegate's CPU kernels (decode ops, paged decode attention, Q8_0
        layers read as stored): asked for, on CPU in bf16, and built here. Decided once; the model
        and the backend still check each call's actual dtype (tests share an fp32 model)."""
        return (config.cpu_kernels and self.device.type == "cpu" and self.dtype == torch.bfloat16
                and cpu_ops.load())

    def check_integrity(self) -> None:
        """No leaked block or request: raises AssertionError otherwise."""
        with self._lock:
            live = {r.request_id for r in self.scheduler.running}
            self.kv.check_integrity(live)
            queued = {r.request_id for r in self.scheduler.running} | {r.request_id for r in self.scheduler.waiting}
            assert queued == set(self.requests), f"request table out of sync: {set(self.requests) ^ queued}"

    # ---- internals -----------------------------------------------------------------------------
    def _poll_grammars(self) -> list[RequestOutput]:
        outputs = []
        for request in list(self.scheduler.waiting):
            if request.status is RequestStatus.WAITING_FOR_GRAMMAR:
                error = self.grammar.poll(request)
                if error is not None:
                    request.error, request.exception = str(error), error
                    self._finish(request, RequestStatus.FINISHED_ERROR)
                    outputs.append(self._output(request))
        return outputs

    def _process(self, groups: list[tuple[Request, int, int]], emitted: list[list[int]],
                 sampled: SamplerOutput) -> list[RequestOutput]:
        """Append each request's emitted tokens (one, or kept drafts and one more); finish those
        that stop."""
        outputs = []
        now = time.monotonic()
        for (request, first_row, num_rows), tokens in zip(groups, emitted):
            drafts, request.draft_token_ids = request.draft_token_ids, []
            if request.is_finished:  # aborted while the forward ran
                continue
            if request.first_token_time is None:
                request.first_token_time = now
                self._totals["prompt"] += request.num_prompt_tokens
                self._totals["cached"] += request.num_cached_tokens
            if num_rows > 1:
                self._totals["drafted"] += len(drafts)
                self._totals["accepted"] += len(tokens) - 1
            try:
                status = None
                for row, token_id in enumerate(tokens, start=first_row):
                    logprob = None
                    if sampled.logprobs is not None and request.params.logprobs is not None:
                        logprob = _logprob_entry(sampled, row, token_id, request.params.logprobs)
                    status = self._append(request, token_id, logprob)
                    if status is not None:
                        break
                if status is None and self.config.grammar_fast_forward and request.matcher is not None:
                    status = self._fast_forward(request)
            except Exception as exc:  # one request's matcher/detokenizer failing must not fail the batch
                log.exception("request %s failed while processing its token", request.request_id)
                request.error = f"internal error in this request's processing: {type(exc).__name__}: {exc}"
                status = RequestStatus.FINISHED_ERROR
            if status is not None:
                self._finish(request, status)
            outputs.append(self._output(request))
        return outputs

    def _append(self, request: Request, token_id: int, logprob: TokenLogprob | None) -> RequestStatus | None:
        """Add one output token (sampled or forced); the status it finishes the request with, if any."""
        request.token_ids.append(token_id)
        request.pending_token_ids.append(token_id)
        self._totals["generation"] += 1
        if logprob is not None:
            request.pending_logprobs.append(logprob)
        return self._check_stop(request, token_id)

    def _fast_forward(self, request: Request) -> RequestStatus | None:
        """Append the tokens the grammar forces next, without sampling: the next step computes them
        in one chunk (as a prompt chunk) and samples after the last. A forced token's logprob is
        reported as 0.0 (the grammar leaves no alternative) with no top alternatives."""
        assert request.matcher is not None
        forced = request.matcher.forced_tokens()
        room = min(request.max_tokens - request.num_output_tokens, self.max_model_len - request.num_tokens)
        for token_id in forced[:max(room, 0)]:
            self._totals["forced"] += 1
            logprob = TokenLogprob(token_id, 0.0, ()) if request.params.logprobs is not None else None
            status = self._append(request, token_id, logprob)
            if status is not None:
                return status
        return None

    def _drafts(self, request: Request) -> list[int]:
        """Prompt-lookup drafts for a request in plain decode (one pending token, no penalties that
        would need the drafts counted, min_tokens reached), checked against its grammar."""
        params, spec = request.params, self.config.speculative
        if request.num_tokens - request.num_computed_tokens != 1 or request.num_output_tokens < params.min_tokens:
            return []
        if params.repetition_penalty != 1.0 or params.presence_penalty or params.frequency_penalty:
            return []
        room = min(spec.num_tokens, request.max_tokens - request.num_output_tokens - 1,
                   self.max_model_len - request.num_tokens - 1)
        if room <= 0:
            return []
        if request.ngram is None:
            request.ngram = NgramIndex(spec.prompt_lookup_min, spec.prompt_lookup_max)
        drafts = request.ngram.propose(request.token_ids, room)
        if drafts and request.matcher is not None:
            drafts = check_drafts(request.matcher, drafts)
        return drafts

    def _check_stop(self, request: Request, token_id: int) -> RequestStatus | None:
        params = request.params
        matcher = request.matcher
        if matcher is not None and not matcher.accept_token(token_id):
            why = getattr(matcher, "error", lambda: None)()
            if why is not None:  # past the backend's limits (e.g. a 2,000-property schema): the spec's fault
                request.error = f"structured output failed: {why}"
                request.exception = GrammarError(request.error)
            else:
                request.error = f"grammar rejected sampled token {token_id}"
            return RequestStatus.FINISHED_ERROR
        matcher_error = getattr(matcher, "error", None)
        if matcher_error is not None and matcher_error() is not None:
            request.error = f"structured output failed: {matcher_error()}"
            request.exception = GrammarError(request.error)
            return RequestStatus.FINISHED_ERROR
        if token_id in request.eos_token_ids and not params.ignore_eos:
            request.stop_reason = None
            return RequestStatus.FINISHED_STOPPED
        if token_id in params.stop_token_ids:
            request.stop_reason = token_id
            return RequestStatus.FINISHED_STOPPED
        hit = request.detokenizer.add(token_id)
        if hit is not None:
            request.stop_reason = hit
            return RequestStatus.FINISHED_STOPPED
        if request.matcher is not None and request.matcher.is_terminated():
            return RequestStatus.FINISHED_STOPPED
        tokens_left = min(request.max_tokens - request.num_output_tokens, self.max_model_len - request.num_tokens)
        calls = request.call_tracker
        if calls is not None and calls.ends_answer(request.detokenizer.text, request.num_output_tokens, tokens_left):
            return RequestStatus.FINISHED_STOPPED  # after its last complete call (grammars/tool_budget.py)
        if tokens_left <= 0:
            return RequestStatus.FINISHED_LENGTH
        return None

    def _finish(self, request: Request, status: RequestStatus) -> None:
        request.status = status
        self.scheduler.remove(request)
        self.requests.pop(request.request_id, None)
        if request.grammar_future is not None and not request.grammar_future.done():
            request.grammar_future.cancel()

    def _output(self, request: Request) -> RequestOutput:
        finished = request.is_finished
        out = RequestOutput(
            request_id=request.request_id,
            new_token_ids=request.pending_token_ids,
            new_text=request.detokenizer.take_delta(final=finished),
            finished=finished,
            finish_reason=request.status.value if finished else None,
            stop_reason=request.stop_reason,
            num_prompt_tokens=request.num_prompt_tokens,
            num_cached_tokens=request.num_cached_tokens,
            num_output_tokens=request.num_output_tokens,
            logprobs=request.pending_logprobs,
            error=request.error,
            exception=request.exception,
        )
        request.pending_token_ids, request.pending_logprobs = [], []
        return out


def _logprob_entry(sampled: SamplerOutput, row: int, token_id: int, n: int) -> TokenLogprob:
    assert sampled.logprobs is not None
    top: tuple[tuple[int, float], ...] = ()
    if n > 0 and sampled.top_ids is not None and sampled.top_logprobs is not None:
        top = tuple(zip(sampled.top_ids[row, :n].tolist(), sampled.top_logprobs[row, :n].tolist()))
    return TokenLogprob(token_id, float(sampled.logprobs[row]), top)
