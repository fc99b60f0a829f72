"""Publish the prefix cache's KV events over ZMQ, as vLLM does (--kv-events-endpoint).

Each batch goes out as one multipart message [topic, sequence number (8 bytes, big-endian),
msgpack([timestamp, [event, ...], data-parallel rank])], each event in msgspec's tagged array
layout (engine/kv_cache/events.py): what llm-d's KV-cache indexer and vLLM's
kv_events_subscriber example read. A background thread does the sending, so a slow network never
holds up a step; batches past a bounded queue are dropped and counted (a subscriber sees the gap
in the sequence numbers and resyncs).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from sluicegate.engine.kv_cache.events import KVEvent

log = logging.getLogger("sluicegate.engine")
_MAX_QUEUED_BATCHES = 10_000


class ZmqKVEventPublisher:
    def __init__(self, endpoint: str, topic: str = "kv-events", data_parallel_rank: int = 0) -> None:
        from sluicegate.extras import require

        require("zmq", "kv-events", "--kv-events-endpoint")
        require("msgpack", "kv-events", "--kv-events-endpoint")
        import msgpack
        import zmq
        self._pack = msgpack.packb
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self._socket = self._context.socket(zmq.PUB)
        self._socket.bind(endpoint)
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)  # the port, when asked for *
        self._topic = topic.encode()
        self._rank = data_parallel_rank
        self._queue: queue.Queue[list[KVEvent] | None] = queue.Queue(_MAX_QUEUED_BATCHES)
        self._sequence = 0
        self.dropped_batches = 0
        self._thread = threading.Thread(target=self._run, name="sluicegate-kv-events", daemon=True)
        self._thread.start()

    def publish(self, events: Sequence[KVEvent]) -> None:
        if not events:
            return
        try:
            self._queue.put_nowait(list(events))
        except queue.Full:
            self.dropped_batches += 1

    def _run(self) -> None:
        while (events := self._queue.get()) is not None:
            payload = self._pack([time.time(), [e.as_array() for e in events], self._rank])
            self._socket.send_multipart([self._topic, self._sequence.to_bytes(8, "big"), payload])
            self._sequence += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._socket.close(linger=0)
