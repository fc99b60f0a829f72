"""Prompt-lookup speculative decoding: drafts copied from the context are verified in one step.
Greedy outputs are identical to decoding without drafts (plain and under a grammar), seeded
sampling stays reproducible, fewer forward steps are taken where the output copies its context,
and no KV block leaks when drafts are rejected, aborted or cut by max_tokens."""

from __future__ import annotations

from typing import Any

from sluicegate.engine.params import SamplingParams
from sluicegate.engine.speculative import NgramIndex, emitted_tokens
from sluicegate.grammars.specs import JsonSchema, ToolSpec
from sluicegate.grammars.tool_grammar import tool_calls_spec

COPY = ("Repeat this list exactly, one item per line: alpha-7, beta-12, gamma-31, delta-44, epsilon-58, "
        "zeta-63, eta-71, theta-89.")
LOOKUP = ToolSpec.of("lookup_order", {"type": "object", "properties": {
    "order_id": {"type": "string"}, "customer": {"type": "string"}}, "required": ["order_id", "customer"]})


def test_ngram_index_proposes_what_followed_the_latest_match() -> None:
    index = NgramIndex(min_n=2, max_n=3)
    tokens = [1, 2, 3, 4, 5, 9, 2, 3]
    assert index.propose(tokens, 3) == [4, 5, 9]  # [2, 3] last ended at position 2
    assert index.propose([*tokens, 4, 7, 2, 3], 2) == [4, 7]  # the later occurrence wins
    assert NgramIndex(2, 3).propose([1, 2, 3, 4], 3) == []  # nothing repeats
    assert NgramIndex(2, 3).propose([5, 6, 5, 6], 4) == [5, 6]  # drafts may run into the suffix itself


def test_emitted_tokens_keep_drafts_while_they_match() -> None:
    assert emitted_tokens([7, 8, 9], [7, 8]) == [7, 8, 9]  # both kept, plus the token after them
    assert emitted_tokens([7, 5, 9], [7, 8]) == [7, 5]  # the first mismatch is the step's new token
    assert emitted_tokens([4], []) == [4]


def _prompt(tokenizer: Any, text: str) -> list[int]:
    messages = [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def _run(engine: Any, requests: list[tuple[list[int], SamplingParams]]) -> list[list[int]]:
    ids = [engine.add_request(p, params) for p, params in requests]
    tokens: dict[str, list[int]] = {i: [] for i in ids}
    while engine.has_unfinished():
        for out in engine.step():
            tokens[out.request_id] += out.new_token_ids
    return [tokens[i] for i in ids]


def test_greedy_outputs_are_identical_and_take_fewer_steps(make_engine: Any) -> None:
    runs = {}
    for method in ("off", "ngram"):
        engine = make_engine(speculative=method, grammar_fast_forward=False)
        tok = engine.tokenizer
        tool = tool_calls_spec([LOOKUP], "required", False)
        schema = JsonSchema.of({"type": "object", "properties": {"items": {"type": "array", "items": {
            "type": "string"}}}, "required": ["items"]})
        requests = [
            (_prompt(tok, COPY), SamplingParams(max_tokens=60, temperature=0)),
            (_prompt(tok, "Order A-99812-XQ for Maria Gonzalez is late. Look it up."),
             SamplingParams(max_tokens=60, temperature=0, grammar=tool)),
            (_prompt(tok, COPY + " Answer as JSON."), SamplingParams(max_tokens=60, temperature=0, grammar=schema)),
        ]
        runs[method] = (_run(engine, requests), engine.stats())
    assert runs["ngram"][0] == runs["off"][0]
    on, off = runs["ngram"][1], runs["off"][1]
    assert off.draft_tokens_total == 0 and on.draft_tokens_total > 0 and on.accepted_draft_tokens_total > 0
    assert on.forward_steps_total < off.forward_steps_total


def test_seeded_sampling_is_reproducible_with_drafts(make_engine: Any) -> None:
    engine = make_engine(speculative="ngram")
    request = (_prompt(engine.tokenizer, COPY), SamplingParams(max_tokens=48, temperature=0.8, seed=11))
    first = _run(engine, [request])[0]
    assert _run(engine, [request])[0] == first and len(first) == 48


def test_batches_with_drafts_abort_and_max_tokens_leave_no_blocks(make_engine: Any) -> None:
    engine = make_engine(speculative="ngram", num_speculative_tokens=6)
    prompt = _prompt(engine.tokenizer, COPY)
    ids = [engine.add_request(prompt, SamplingParams(max_tokens=n, temperature=0)) for n in (5, 17, 40)]
    aborted = engine.add_request(prompt, SamplingParams(max_tokens=40, temperature=0))
    finals = {}
    steps = 0
    while engine.has_unfinished():
        steps += 1
        if steps == 4:
            engine.abort(aborted)
        for out in engine.step():
            if out.finished:
                finals[out.request_id] = out
    assert [finals[i].num_output_tokens for i in ids] == [5, 17, 40]
    assert finals[aborted].finish_reason == "abort"
