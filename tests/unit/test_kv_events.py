"""KV events over ZMQ: a subscriber that applies BlockStored / BlockRemoved rebuilds exactly the
set of blocks the engine's prefix cache holds, through sharing, eviction and aborts."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sluicegate.engine.params import SamplingParams

zmq = pytest.importorskip("zmq")
msgpack = pytest.importorskip("msgpack")


def _drain(socket: Any, blocks: dict[int, tuple[int | None, tuple[int, ...]]], sequence: list[int]) -> None:
    while socket.poll(200):
        topic, seq, payload = socket.recv_multipart()
        assert topic == b"kv-events"
        sequence.append(int.from_bytes(seq, "big"))
        ts, events, rank = msgpack.unpackb(payload)
        assert isinstance(ts, float) and rank == 0
        for event in events:
            kind = event[0]
            if kind == "BlockStored":
                _, hashes, parent, token_ids, block_size, lora_id, medium = event
                assert block_size == 16 and lora_id is None and medium == "GPU" and len(token_ids) == 16
                for h in hashes:
                    blocks[h] = (parent, tuple(token_ids))
            elif kind == "BlockRemoved":
                for h in event[1]:
                    del blocks[h]  # only blocks that were stored are ever removed
                sequence.append(-1)  # marks that evictions were seen
            else:
                assert kind == "AllBlocksCleared"
                blocks.clear()


def test_a_subscriber_rebuilds_the_prefix_cache(make_engine: Any) -> None:
    engine = make_engine(kv_events_endpoint="tcp://127.0.0.1:*", num_blocks=40)
    assert engine.kv_events is not None
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.connect(engine.kv_events.endpoint)
    socket.setsockopt(zmq.SUBSCRIBE, b"kv-events")
    time.sleep(0.3)  # a PUB socket drops what it sends before the subscription arrives
    blocks: dict[int, tuple[int | None, tuple[int, ...]]] = {}
    sequence: list[int] = []
    shared = list(range(1000, 1100))  # ~6 blocks every request shares
    prompts = [shared + [2000 + i] * (40 + 30 * i) for i in range(6)]  # later ones evict earlier ones
    try:
        for i, prompt in enumerate(prompts):
            request_id = engine.add_request(prompt, SamplingParams(max_tokens=8, temperature=0))
            steps = 0
            while engine.has_unfinished():
                steps += 1
                if i == 3 and steps == 2:
                    engine.abort(request_id)
                engine.step()
            _drain(socket, blocks, sequence)
            cached = {h: (b.key.parent_hash, b.key.token_ids) for h, b in engine.kv.pool.cached.items()}
            assert blocks == cached, f"after request {i}"
        assert -1 in sequence  # the small pool evicted cached blocks on the way
        batches = [n for n in sequence if n >= 0]
        assert batches == list(range(len(batches))) and batches  # every batch arrived, in order
        assert any(parent is None for parent, _ in blocks.values())  # the chain's first block
    finally:
        socket.close(linger=0)
        engine.close()
