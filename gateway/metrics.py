"""Prometheus metrics for one app, in a private CollectorRegistry (no global state, many apps per process).

Request-side numbers (status counts, TTFT, inter-token latency, tokens in/out) are observed by the
routes; engine-side gauges (queue, running, KV usage, prefix-cache hit rate) are read from
engine.stats() when /metrics is scraped, so nothing is woven into the engine's data structures.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                    3.0, 5.0, 7.5, 10.0, 20.0, 40.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
# Per-prompt_cache_key series kept; keys beyond this many are counted under "other" so a client
# cannot grow /metrics without bound.
MAX_CACHE_KEY_SERIES = 100
_COMPILE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("sluicegate_requests", "HTTP API requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.ttft = Histogram("sluicegate_time_to_first_token_seconds", "Time from request to first token",
                              buckets=_LATENCY_BUCKETS, registry=r)
        self.itl = Histogram("sluicegate_inter_token_latency_seconds", "Time between output tokens",
                             buckets=_ITL_BUCKETS, registry=r)
        self.e2e = Histogram("sluicegate_request_latency_seconds", "Time from request to last token",
                             buckets=_LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("sluicegate_prompt_tokens", "Prompt tokens processed", registry=r)
        self.cached_tokens = Counter("sluicegate_cached_prompt_tokens", "Prompt tokens served from the prefix cache",
                                     registry=r)
        self.key_prompt_tokens = Counter("sluicegate_prompt_cache_key_prompt_tokens",
                                         "Prompt tokens of requests sending this prompt_cache_key",
                                         ["prompt_cache_key"], registry=r)
        self.key_cached_tokens = Counter("sluicegate_prompt_cache_key_cached_tokens",
                                         "Of those, prompt tokens served from the prefix cache",
                                         ["prompt_cache_key"], registry=r)
        self._cache_keys: set[str] = set()
        self.pinned_blocks = Gauge("sluicegate_kv_cache_pinned_free_blocks",
                                   "Free KV blocks held for pinned prefixes (prompt_cache_retention 24h)",
                                   registry=r)
        self.generation_tokens = Counter("sluicegate_generation_tokens", "Output tokens generated", registry=r)
        self.grammar_compile = Histogram("sluicegate_grammar_compile_seconds", "Grammar compile time",
                                         buckets=_COMPILE_BUCKETS, registry=r)
        self.queue_length = Gauge("sluicegate_num_requests_waiting", "Requests queued in the engine", registry=r)
        self.running = Gauge("sluicegate_num_requests_running", "Requests running in the engine", registry=r)
        self.kv_usage = Gauge("sluicegate_kv_cache_usage_ratio", "Share of KV-cache blocks in use", registry=r)
        self.prefix_hit_rate = Gauge("sluicegate_prefix_cache_hit_rate",
                                     "Share of prompt tokens served from the prefix cache", registry=r)
        self.forward_steps = Gauge("sluicegate_engine_forward_steps",
                                   "Forward steps the engine has run since it started", registry=r)
        self.forced_tokens = Gauge("sluicegate_engine_forced_tokens",
                                   "Output tokens appended without sampling because the grammar forced them "
                                   "(grammar fast-forward), since the engine started", registry=r)
        self.draft_tokens = Gauge("sluicegate_spec_decode_draft_tokens",
                                  "Speculative draft tokens verified since start (--speculative ngram)",
                                  registry=r)
        self.accepted_draft_tokens = Gauge("sluicegate_spec_decode_accepted_tokens",
                                           "Speculative draft tokens kept since start (each saved a forward step)",
                                           registry=r)
        # The model-server protocol that Kubernetes' Gateway API Inference Extension (and llm-d's endpoint
        # picker) reads from vLLM pods, so sluicegate pods are routed the same way (same values as above).
        self.epp_waiting = Gauge("vllm:num_requests_waiting", "Requests queued in the engine", registry=r)
        self.epp_running = Gauge("vllm:num_requests_running", "Requests running in the engine", registry=r)
        self.epp_kv_usage = Gauge("vllm:kv_cache_usage_perc", "Share of KV-cache blocks in use (0-1)", registry=r)
        self.epp_cache_config = Gauge("vllm:cache_config_info", "KV cache layout", ["block_size", "num_gpu_blocks"],
                                      registry=r)
        self.ready = Gauge("sluicegate_ready", "1 when the model is loaded and requests are taken", registry=r)

    def observe_request(self, endpoint: str, status: int) -> None:
        self.requests.labels(endpoint=endpoint, status=str(status)).inc()

    def observe_usage(self, prompt_tokens: int, cached_tokens: int, output_tokens: int,
                      cache_key: str | None = None) -> None:
        self.prompt_tokens.inc(prompt_tokens)
        self.cached_tokens.inc(cached_tokens)
        self.generation_tokens.inc(output_tokens)
        if cache_key is not None:
            if cache_key not in self._cache_keys and len(self._cache_keys) >= MAX_CACHE_KEY_SERIES:
                cache_key = "other"
            self._cache_keys.add(cache_key)
            self.key_prompt_tokens.labels(prompt_cache_key=cache_key).inc(prompt_tokens)
            self.key_cached_tokens.labels(prompt_cache_key=cache_key).inc(cached_tokens)

    def refresh_engine(self, engine: Any | None, ready: bool) -> None:
        """Copy the engine's gauges (called on scrape). Grammar compile times come from the engine's
        stats when it reports them (`grammar_compile_times`: new samples since the last scrape)."""
        self.ready.set(1.0 if ready else 0.0)
        if engine is None:
            return
        stats = engine.stats()
        self.queue_length.set(getattr(stats, "num_waiting", 0))
        self.running.set(getattr(stats, "num_running", 0))
        self.kv_usage.set(getattr(stats, "kv_usage", 0.0))
        self.epp_waiting.set(getattr(stats, "num_waiting", 0))
        self.epp_running.set(getattr(stats, "num_running", 0))
        self.epp_kv_usage.set(getattr(stats, "kv_usage", 0.0))
        if hasattr(stats, "kv_block_size"):
            self.epp_cache_config.labels(block_size=str(stats.kv_block_size),
                                         num_gpu_blocks=str(stats.kv_num_blocks)).set(1)
        self.pinned_blocks.set(getattr(stats, "kv_pinned_free_blocks", 0))
        self.forward_steps.set(getattr(stats, "forward_steps_total", 0))
        self.forced_tokens.set(getattr(stats, "forced_tokens_total", 0))
        self.draft_tokens.set(getattr(stats, "draft_tokens_total", 0))
        self.accepted_draft_tokens.set(getattr(stats, "accepted_draft_tokens_total", 0))
        self.prefix_hit_rate.set(getattr(stats, "prefix_cache_hit_rate", 0.0))
        for seconds in _drain_compile_times(engine):
            self.grammar_compile.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _drain_compile_times(engine: Any) -> list[float]:
    drain = getattr(engine, "drain_grammar_compile_times", None)
    return list(drain()) if callable(drain) else []
