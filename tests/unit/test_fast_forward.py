"""Grammar fast-forward: tokens the grammar forces are appended without sampling and computed in
the next step as one chunk. Greedy outputs stay identical to sampling every token; the request
takes fewer forward steps; forced tokens report logprob 0.0; seeded sampling stays reproducible."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluicegate.engine.params import SamplingParams
from sluicegate.grammars.specs import JsonSchema, ToolSpec
from sluicegate.grammars.tool_grammar import tool_calls_spec

BFCL_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "bfcl_e2e.jsonl"
WEATHER = ToolSpec.of("get_weather", {"type": "object", "properties": {
    "city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
    "required": ["city", "unit"]}, "Current weather in a city")


def _prompt(tokenizer: Any, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def _run(engine: Any, requests: list[tuple[list[int], SamplingParams]]) -> list[tuple[list[int], list[Any]]]:
    """Token ids and logprob entries of each request, in order."""
    ids = [engine.add_request(p, params) for p, params in requests]
    tokens: dict[str, list[int]] = {i: [] for i in ids}
    logprobs: dict[str, list[Any]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            tokens[out.request_id] += out.new_token_ids
            logprobs[out.request_id] += out.logprobs
    return [(tokens[i], logprobs[i]) for i in ids]


def _tool_request(engine: Any, **params: Any) -> tuple[list[int], SamplingParams]:
    prompt = _prompt(engine.tokenizer, "What's the weather in Paris, in celsius?")
    return prompt, SamplingParams(max_tokens=64, grammar=tool_calls_spec([WEATHER], "required", False), **params)


def test_a_tool_call_takes_fewer_steps_with_the_same_greedy_tokens(make_engine: Any) -> None:
    runs = {}
    for ff in (False, True):
        engine = make_engine(grammar_fast_forward=ff)
        (tokens, _), = _run(engine, [_tool_request(engine, temperature=0)])
        runs[ff] = (tokens, engine.stats())
    assert runs[True][0] == runs[False][0]
    on, off = runs[True][1], runs[False][1]
    assert on.forced_tokens_total > 0 and off.forced_tokens_total == 0
    # every forced token saves one step (the prompt's prefill is one step either way)
    assert on.forward_steps_total == off.forward_steps_total - on.forced_tokens_total


def test_forced_tokens_report_logprob_zero_and_seeded_sampling_is_reproducible(make_engine: Any) -> None:
    engine = make_engine(grammar_fast_forward=True)
    first, again = (_run(engine, [_tool_request(engine, temperature=0.9, seed=7, logprobs=2)])[0]
                    for _ in range(2))
    assert first[0] == again[0]
    forced = [entry for entry in first[1] if entry.logprob == 0.0 and not entry.top]
    assert forced and len(first[1]) == len(first[0])


@pytest.mark.slow
def test_bfcl_schemas_greedy_identical_with_fast_forward(make_engine: Any) -> None:
    schemas = [json.loads(line)["schema"] for line in BFCL_SAMPLE.read_text().splitlines()][:16]
    outputs = {}
    for ff in (False, True):
        engine = make_engine(grammar_fast_forward=ff, max_num_seqs=16)
        requests = [(_prompt(engine.tokenizer, f"Give JSON arguments for: {json.dumps(s)[:400]}"),
                     SamplingParams(max_tokens=64, temperature=0, grammar=JsonSchema.of(s))) for s in schemas]
        outputs[ff] = [tokens for tokens, _ in _run(engine, requests)]
    assert outputs[True] == outputs[False]
