"""The offline API, as a vLLM user expects: LLM(model=None, **options).generate(prompts, params)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

from sluicegate.engine.config import (
    CacheConfig,
    EngineConfig,
    GrammarConfig,
    KVEventsConfig,
    ModelConfig,
    SchedulerConfig,
    SpeculativeConfig,
)
from sluicegate.engine.llm_engine import LLMEngine
from sluicegate.engine.outputs import CompletionOutput
from sluicegate.engine.params import SamplingParams

_SECTIONS = {"model": ModelConfig, "cache": CacheConfig, "scheduler": SchedulerConfig, "grammar": GrammarConfig,
             "speculative": SpeculativeConfig, "kv_events": KVEventsConfig}
_RENAMES = {"grammar_backend": ("grammar", "backend"), "speculative": ("speculative", "method"),
            "num_speculative_tokens": ("speculative", "num_tokens"),
            "kv_events_endpoint": ("kv_events", "endpoint"), "kv_events_topic": ("kv_events", "topic")}


def build_config(model: str | None = None, **options: object) -> EngineConfig:
    """Route flat keyword options (dtype=, block_size=, max_num_seqs=, ...) to their config section;
    an unknown option is an error, never silently dropped."""
    sections: dict[str, dict[str, object]] = {name: {} for name in _SECTIONS}
    sections["model"]["model"] = model
    top: dict[str, object] = {}
    for key, value in options.items():
        if key in _RENAMES:
            section, field = _RENAMES[key]
            sections[section][field] = value
            continue
        for name, cls in _SECTIONS.items():
            if key in {f.name for f in fields(cls)}:
                sections[name][key] = value
                break
        else:
            if key in {f.name for f in fields(EngineConfig)} - set(_SECTIONS):
                top[key] = value
            else:
                raise TypeError(f"unknown engine option {key!r}")
    return EngineConfig(**{name: _SECTIONS[name](**vals) for name, vals in sections.items()}, **top)  # type: ignore[arg-type]


class LLM:
    def __init__(self, model: str | None = None, *, config: EngineConfig | None = None, **options: object) -> None:
        """LLM(model, dtype=..., max_num_seqs=...) or LLM(config=EngineConfig(...)), not both."""
        if config is not None and (model is not None or options):
            raise TypeError("pass either config= or model and options, not both")
        self.engine = LLMEngine(config or build_config(model, **options))
        self.tokenizer = self.engine.tokenizer

    def generate(self, prompts: str | Sequence[str] | Sequence[Sequence[int]],
                 params: SamplingParams | Sequence[SamplingParams] | None = None) -> list[CompletionOutput]:
        """Run every prompt to completion with continuous batching; outputs in prompt order."""
        if isinstance(prompts, str):
            prompts = [prompts]
        token_lists = [list(p) if not isinstance(p, str) else self.tokenizer(p).input_ids for p in prompts]
        if params is None or isinstance(params, SamplingParams):
            params_list = [params or SamplingParams() for _ in token_lists]
        else:
            params_list = list(params)
        ids = [self.engine.add_request(ids, p) for ids, p in zip(token_lists, params_list)]
        prompt_of = dict(zip(ids, token_lists))
        texts = {i: "" for i in ids}
        tokens: dict[str, list[int]] = {i: [] for i in ids}
        results: dict[str, CompletionOutput] = {}
        while len(results) < len(ids):
            for out in self.engine.step():
                texts[out.request_id] += out.new_text
                tokens[out.request_id] += out.new_token_ids
                if out.finished:
                    results[out.request_id] = CompletionOutput(
                        out.request_id, prompt_of[out.request_id], texts[out.request_id],
                        tokens[out.request_id], out.finish_reason, out.num_cached_tokens)
        return [results[i] for i in ids]
