"""Engine behaviour on the default model: bad input, seeds, stops, aborts, the async front."""

from __future__ import annotations

import asyncio

import pytest

from sluicegate.engine.params import InvalidRequestError, SamplingParams


def _drain(engine) -> dict[str, list]:  # noqa: ANN001
    outs: dict[str, list] = {}
    while engine.has_unfinished():
        for out in engine.step():
            outs.setdefault(out.request_id, []).append(out)
    return outs


@pytest.mark.parametrize(("prompt", "params", "param"), [
    ([], SamplingParams(), "prompt"),
    ([1, 2, 10**9], SamplingParams(), "prompt"),
    ([1, 2, 3], SamplingParams(max_tokens=0), "max_tokens"),
    ([1, 2, 3], SamplingParams(temperature=-1), "temperature"),
    ([1, 2, 3], SamplingParams(temperature=float("nan")), "temperature"),
    ([1, 2, 3], SamplingParams(top_p=0), "top_p"),
    ([1, 2, 3], SamplingParams(top_k=-2), "top_k"),
    ([1, 2, 3], SamplingParams(presence_penalty=5), "presence_penalty"),
    ([1, 2, 3], SamplingParams(logit_bias={10**9: 1.0}), "logit_bias"),
    ([1, 2, 3], SamplingParams(stop=[""]), "stop"),
    ([1, 2, 3], SamplingParams(logprobs=99), "logprobs"),
    ([1, 2, 3], SamplingParams(max_tokens=10**7), "messages"),
])
def test_bad_input_is_refused_before_scheduling(make_engine, prompt, params, param) -> None:  # noqa: ANN001
    engine = make_engine()
    with pytest.raises(InvalidRequestError) as err:
        engine.add_request(prompt, params)
    assert err.value.param == param
    assert not engine.has_unfinished()


def test_context_overflow_message_is_openai_like(make_engine) -> None:  # noqa: ANN001
    engine = make_engine(max_model_len=64)
    with pytest.raises(InvalidRequestError, match="maximum context length is 64 tokens") as err:
        engine.add_request(list(range(100, 160)), SamplingParams(max_tokens=10))
    assert err.value.code == "context_length_exceeded"


def test_others_keep_serving_after_a_bad_request(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    good = engine.add_request(engine.tokenizer("Hello").input_ids, SamplingParams(max_tokens=4, temperature=0))
    with pytest.raises(InvalidRequestError):
        engine.add_request([], SamplingParams())
    outs = _drain(engine)
    assert outs[good][-1].finished and outs[good][-1].num_output_tokens == 4


@pytest.mark.slow
def test_seeded_sampling_does_not_depend_on_batch(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    tok = engine.tokenizer
    params = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.95, seed=1234)
    alone = engine.add_request(tok("Tell me a story about a fox").input_ids, params)
    solo = [t for o in _drain(engine)[alone] for t in o.new_token_ids]
    ids = [engine.add_request(tok(p).input_ids, SamplingParams(max_tokens=12, temperature=1.0))
           for p in ("Other prompt one", "A second unrelated prompt that is longer than the first")]
    again = engine.add_request(tok("Tell me a story about a fox").input_ids, params)
    ids.append(engine.add_request(tok("and a third").input_ids, SamplingParams(max_tokens=5, temperature=1.0)))
    batched = [t for o in _drain(engine)[again] for t in o.new_token_ids]
    assert solo == batched


def test_stop_strings_and_tokens(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    tok = engine.tokenizer
    prompt = tok("Count: 1, 2, 3, 4, 5, 6, 7, 8,").input_ids
    rid = engine.add_request(prompt, SamplingParams(max_tokens=30, temperature=0, stop=[" 12"]))
    outs = _drain(engine)[rid]
    text = "".join(o.new_text for o in outs)
    assert outs[-1].finish_reason == "stop" and outs[-1].stop_reason == " 12"
    assert "12" not in text
    first = engine.add_request(prompt, SamplingParams(max_tokens=3, temperature=0))
    first_tokens = [t for o in _drain(engine)[first] for t in o.new_token_ids]
    rid = engine.add_request(prompt, SamplingParams(max_tokens=30, temperature=0, stop_token_ids=[first_tokens[1]]))
    outs = _drain(engine)[rid]
    assert outs[-1].stop_reason == first_tokens[1]
    assert outs[-1].num_output_tokens == 2


def test_abort_frees_blocks(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    rid = engine.add_request(engine.tokenizer("Write a long essay").input_ids, SamplingParams(max_tokens=200))
    engine.step()
    engine.step()
    engine.abort(rid)
    outs = _drain(engine)
    assert outs[rid][-1].finish_reason == "abort"
    engine.check_integrity()
    assert engine.kv.usage == 0.0


def test_prefix_cache_reports_cached_tokens(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    prompt = engine.tokenizer("You are a careful assistant. " * 20 + "Question one?").input_ids
    first = engine.add_request(prompt, SamplingParams(max_tokens=2))
    assert _drain(engine)[first][-1].num_cached_tokens == 0
    second = engine.add_request(prompt[:-3] + [42, 43, 44], SamplingParams(max_tokens=2))
    cached = _drain(engine)[second][-1].num_cached_tokens
    assert cached == (len(prompt) - 3) // 16 * 16 > 0
    assert engine.stats().prefix_cache_hit_rate > 0


def test_logprobs(make_engine) -> None:  # noqa: ANN001
    engine = make_engine()
    rid = engine.add_request(engine.tokenizer("The sky is").input_ids,
                             SamplingParams(max_tokens=3, temperature=0, logprobs=2))
    outs = _drain(engine)[rid]
    lps = [lp for o in outs for lp in o.logprobs]
    assert len(lps) == 3
    assert all(lp.top[0][0] == lp.token_id and len(lp.top) == 2 and lp.logprob <= 0 for lp in lps)


def test_async_generate_and_cancel(default_model_fp32) -> None:  # noqa: ANN001
    from sluicegate.engine.async_engine import AsyncEngine
    from sluicegate.engine.llm import build_config

    async def scenario() -> None:
        engine = AsyncEngine(build_config(None, dtype="float32", kv_cache_memory_gb=0.125), loaded=default_model_fp32)
        await engine.start()
        try:
            ids = engine.tokenizer("Hello there").input_ids
            text = ""
            async for out in engine.generate(ids, SamplingParams(max_tokens=5, temperature=0)):
                text += out.new_text
            assert out.finished and out.num_output_tokens == 5
            with pytest.raises(InvalidRequestError):
                async for _ in engine.generate([], SamplingParams()):
                    pass
            # A consumer that walks away mid-stream aborts its request and frees its blocks.
            gen = engine.generate(ids, SamplingParams(max_tokens=500))
            async for _ in gen:
                break
            await gen.aclose()
            for _ in range(100):
                if not engine.engine.has_unfinished():
                    break
                await asyncio.sleep(0.02)
            engine.check_integrity()
            assert engine.engine.kv.usage == 0.0
        finally:
            await engine.shutdown()

    asyncio.run(scenario())
