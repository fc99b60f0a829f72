"""AsyncEngine: the step loop on its own thread, `async generate()` streams per request.

Cancelling or closing a generate() iterator aborts its request, which frees its KV blocks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
import uuid
from collections.abc import AsyncIterator

from sluicegate.engine.config import EngineConfig
from sluicegate.engine.llm_engine import LLMEngine
from sluicegate.engine.models.loader import LoadedModel
from sluicegate.engine.outputs import RequestOutput
from sluicegate.engine.params import SamplingParams
from sluicegate.grammars.backend import GrammarError

log = logging.getLogger("sluicegate.engine")


class AsyncEngine:
    def __init__(self, config: EngineConfig, loaded: LoadedModel | None = None,
                 engine: LLMEngine | None = None) -> None:
        self.engine = engine or LLMEngine(config, loaded)
        self.tokenizer = self.engine.tokenizer
        self.chat_template = self.engine.chat_template
        self.model_name = self.engine.model_name
        self.max_model_len = self.engine.max_model_len
        self.eos_token_ids = self.engine.eos_token_ids
        self.vocab_size = self.engine.vocab_size
        self._queues: dict[str, asyncio.Queue[RequestOutput]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = False

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sluicegate-step-loop", daemon=True)
        self._thread.start()
        # a served model gets tool and JSON requests: prepare the grammar backend beside start-up
        threading.Thread(target=self.engine.grammar.warm_up, name="sluicegate-grammar-warm-up", daemon=True).start()

    async def shutdown(self) -> None:
        for request_id in list(self._queues):
            self.engine.abort(request_id)
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None
        self.engine.close()

    @property
    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stopping:
            if not self.engine.has_unfinished():
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            try:
                outputs = self.engine.step()
            except Exception:  # keep serving: fail what was in flight, log, go on
                log.error("engine step failed:\n%s", traceback.format_exc())
                outputs = self.engine.fail_all("internal engine error; see server log")
            if not outputs:
                self._wake.wait(0.002)  # only grammars compiling: don't spin
                continue
            self._hand_off(outputs)

    def _hand_off(self, outputs: list[RequestOutput]) -> None:
        """One wake-up of the event loop per step, whatever the batch: each call_soon_threadsafe
        writes to the loop's self-pipe, and a 32-stream step used to pay 32 of them."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._deliver, outputs)

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        """On the event loop: route each output to its request's queue (gone if it was cancelled)."""
        for out in outputs:
            queue = self._queues.get(out.request_id)
            if queue is not None:
                queue.put_nowait(out)

    # ---- requests ------------------------------------------------------------------------------
    async def generate(self, prompt_token_ids: list[int], params: SamplingParams,
                       request_id: str | None = None) -> AsyncIterator[RequestOutput]:
        """Yield RequestOutput deltas until one has finished=True. Raises InvalidRequestError /
        QueueFullError at once, GrammarError when the request's grammar cannot be compiled."""
        if not self.is_running:
            raise RuntimeError("the engine is not started (await engine.start())")
        request_id = request_id or uuid.uuid4().hex
        queue: asyncio.Queue[RequestOutput] = asyncio.Queue()
        self._queues[request_id] = queue
        finished = False
        try:
            self.engine.add_request(prompt_token_ids, params, request_id)
            self._wake.set()
            first = True
            while True:
                out = await queue.get()
                finished = out.finished
                if first and out.finish_reason == "error" and isinstance(out.exception, GrammarError):
                    raise out.exception
                first = False
                yield out
                if finished:
                    return
        finally:
            self._queues.pop(request_id, None)
            if not finished:
                self.engine.abort(request_id)

    async def abort(self, request_id: str) -> None:
        self.engine.abort(request_id)
        self._wake.set()

    def stats(self):  # noqa: ANN201 - EngineStats
        return self.engine.stats()

    def drain_grammar_compile_times(self) -> list[float]:
        """Grammar compile durations since the last call (the gateway's /metrics histogram)."""
        return self.engine.grammar.drain_compile_times()

    def check_integrity(self) -> None:
        self.engine.check_integrity()
