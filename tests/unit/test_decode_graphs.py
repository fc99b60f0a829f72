"""Decode graphs: the static-buffer, padded replay path gives the same tokens as eager steps.

CUDA graphs need a GPU; here EagerReplay stands in for the graph, so everything but the capture
itself runs: static buffers, padding rows on the null block, the captured metadata (max_seq_len
fixed at max_model_len), fallback to eager for prefill and mixed steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sluicegate.engine.decode_graphs import capture_eager, capture_sizes
from sluicegate.engine.llm_engine import LLMEngine
from sluicegate.engine.params import SamplingParams

PROMPTS = ["The capital of France is", "def fibonacci(n):", "1, 2, 3, 4, 5,",
           "Write a short poem about the sea.", "Hello"]
MAX_TOKENS = [12, 7, 10, 4, 9]  # different lengths: the batch shrinks step by step (5 -> 1 rows)


def test_capture_sizes_pad_by_at_most_seven_rows() -> None:
    assert capture_sizes(1) == (1,)
    assert capture_sizes(8) == (1, 2, 4, 8)
    assert capture_sizes(20) == (1, 2, 4, 8, 16, 20)
    sizes = capture_sizes(64)
    assert sizes[-1] == 64 and all(b - a <= 8 for a, b in zip(sizes, sizes[1:]))


def _run(engine: LLMEngine, staggered: bool) -> list[list[int]]:
    """Greedy tokens per prompt; staggered: the last two prompts arrive after a few steps, so some
    steps mix prefill with decodes (those must take the eager path)."""
    tok = engine.tokenizer
    first = PROMPTS[:3] if staggered else PROMPTS
    ids = [engine.add_request(tok(p).input_ids, SamplingParams(max_tokens=m, temperature=0.0, ignore_eos=True))
           for p, m in zip(first, MAX_TOKENS)]
    got: dict[str, list[int]] = {i: [] for i in ids}
    done: set[str] = set()
    steps = 0
    while len(done) < len(PROMPTS):
        steps += 1
        if staggered and steps == 3:
            for p, m in zip(PROMPTS[3:], MAX_TOKENS[3:]):
                rid = engine.add_request(tok(p).input_ids, SamplingParams(max_tokens=m, temperature=0.0,
                                                                          ignore_eos=True))
                ids.append(rid)
                got[rid] = []
        for out in engine.step():
            got[out.request_id] += out.new_token_ids
            if out.finished:
                done.add(out.request_id)
    return [got[i] for i in ids]


@pytest.mark.parametrize("staggered", [False, True], ids=["together", "staggered"])
def test_graph_replay_matches_eager(make_engine: Callable[..., LLMEngine], staggered: bool) -> None:
    eager = make_engine(max_model_len=256, max_num_seqs=8)
    graphs = make_engine(max_model_len=256, max_num_seqs=8)
    graphs.runner.capture_decode_graphs(8, graphs.max_model_len, capture=capture_eager)
    expected = _run(eager, staggered)
    got = _run(graphs, staggered)
    assert got == expected
    runner = graphs.runner.decode_graphs
    assert runner is not None and runner.num_replays >= max(MAX_TOKENS) - 3, "decode steps must replay"
    # A second round: prompts hit the prefix cache; the graph path reads those shared blocks too.
    assert _run(graphs, staggered) == expected


def test_padding_rows_touch_only_the_null_block(make_engine: Callable[..., LLMEngine]) -> None:
    """Three decoding sequences replay the size-4 graph: the padding row writes only block 0."""
    engine = make_engine(max_model_len=256, max_num_seqs=8, enable_prefix_caching=False)
    engine.runner.capture_decode_graphs(8, engine.max_model_len, capture=capture_eager)
    caches = [c for pair in engine.runner.kv_caches for c in pair]  # each [num_blocks, bs, kv, D]
    before = [c.clone() for c in caches]
    tok = engine.tokenizer
    ids = [engine.add_request(tok(p).input_ids, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
           for p in PROMPTS[:3]]
    owned: set[int] = set()  # every block any request held at any time (recorded at allocation)
    allocate = engine.kv.allocate

    def recording_allocate(request_id: str, *args: Any, **kwargs: Any) -> bool:
        ok = allocate(request_id, *args, **kwargs)
        owned.update(engine.kv.block_table(request_id))
        return ok

    engine.kv.allocate = recording_allocate  # type: ignore[method-assign]
    while engine.has_unfinished():
        engine.step()
    assert all(rid not in engine.requests for rid in ids)
    runner = engine.runner.decode_graphs
    assert runner is not None and runner.num_replays == 3, "three decode steps of three rows, padded to 4"
    written = {b for b in range(caches[0].shape[0]) if any(not c[b].equal(o[b]) for c, o in zip(caches, before))}
    assert 0 in written, "the padding row writes its key/value into the null block"
    assert written - {0} <= owned, f"blocks written outside any request: {sorted(written - {0} - owned)}"


def test_a_failed_capture_leaves_decode_eager(make_engine: Callable[..., LLMEngine]) -> None:
    engine = make_engine(max_model_len=256, max_num_seqs=4)

    def failing_capture(fn: Callable[[], Any]) -> Any:
        fn()
        raise RuntimeError("operation not permitted when stream is capturing")

    assert engine.runner.capture_decode_graphs(4, engine.max_model_len, capture=failing_capture) is False
    assert engine.runner.decode_graphs is None
    rid = engine.add_request(engine.tokenizer("Hello").input_ids,
                             SamplingParams(max_tokens=3, temperature=0.0, ignore_eos=True))
    outs = []
    while engine.has_unfinished():
        outs += engine.step()
    assert [o for o in outs if o.request_id == rid and o.finished][0].num_output_tokens == 3
