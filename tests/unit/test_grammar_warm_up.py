"""A served engine prepares its grammar backend beside start-up, not on the first tool request."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from sluicegate.engine.config import GrammarConfig
from sluicegate.engine.structured import GrammarStage


def test_async_engine_start_builds_the_compiler_without_a_request(make_engine) -> None:  # noqa: ANN001
    from sluicegate.engine.async_engine import AsyncEngine

    async def main() -> bool:
        engine = AsyncEngine(None, engine=make_engine())  # type: ignore[arg-type]
        await engine.start()
        try:
            deadline = time.monotonic() + 60
            while engine.engine.grammar._compiler is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            return engine.engine.grammar._compiler is not None
        finally:
            await engine.shutdown()

    assert asyncio.run(main())


def test_warm_up_after_close_builds_nothing(default_model_fp32) -> None:  # noqa: ANN001
    stage = GrammarStage(GrammarConfig(), default_model_fp32.tokenizer, default_model_fp32.arch.vocab_size)
    stage.close()
    stage.warm_up()
    assert stage._compiler is None


def test_a_failing_warm_up_is_logged_and_left_to_the_first_request(caplog: pytest.LogCaptureFixture) -> None:
    stage = GrammarStage(GrammarConfig(), tokenizer=object(), vocab_size=10)  # no vocabulary to read
    with caplog.at_level(logging.WARNING, logger="sluicegate.engine"):
        stage.warm_up()
    assert stage._compiler is None
    assert "not prepared ahead" in caplog.text
    with pytest.raises(Exception):  # noqa: B017 - whatever the backend raises, the request sees it
        stage.compiler  # noqa: B018
