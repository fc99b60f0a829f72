"""`--replicas`: two replicas of the default model on a local Ray Serve, one torch thread each,
driven through the real HTTP endpoint with the official openai client.

One Ray cluster and application serve the whole module (starting them takes most of its time).
The router runs with route_imbalance=1, so one extra request in flight is already "hot".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("ray.serve", reason="needs the 'ray' extra: pip install 'sluicegate[ray]'")
openai = pytest.importorskip("openai")

from tests.integration.conftest import free_port  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = "SmolLM2-135M-Instruct"
REPLICA_HEADER = "x-sluicegate-replica"


def _system_prompt(topic: str) -> str:
    """A long system prompt (~600 tokens) that starts with its own topic, so agents differ from block 0."""
    rules = " ".join(f"Rule {i}: when asked about {topic}, answer in one short sentence and cite fact {i}."
                     for i in range(30))
    return f"You are an assistant about {topic}. {rules}"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    import ray
    from ray import serve

    from sluicegate.gateway.cli import parse_args, settings_from_args
    from sluicegate.gateway.cluster.launch import run_application, start_ray

    port = free_port()
    settings = settings_from_args(parse_args([
        "serve", "--replicas", "2", "--num-threads", "1", "--port", str(port), "--kv-cache-memory-gb", "0.25",
        "--route-imbalance", "1", "--ray-object-store-mb", "128", "--log-level", "warning"]))
    start_ray(settings)
    try:
        run_application(settings)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(endpoint: str) -> Any:
    return openai.OpenAI(base_url=endpoint, api_key="unused", max_retries=0, timeout=120)


def _chat(client: Any, messages: list[dict[str, str]], max_tokens: int = 12, min_tokens: int = 0) -> tuple[str, Any]:
    """(replica, completion) for one non-streamed chat turn."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=max_tokens, temperature=0, extra_body={"min_tokens": min_tokens})
    return raw.headers[REPLICA_HEADER], raw.parse()


def _streamed_turn(client: Any, messages: list[dict[str, str]]) -> tuple[str, str, Any]:
    """(replica, text, usage) of one streamed chat turn."""
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True})
    text, usage = "", None
    for chunk in raw.parse():
        text += "".join(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    return raw.headers[REPLICA_HEADER], text, usage


def _agent(client: Any, topic: str, turns: int) -> list[tuple[str, float]]:
    """One agent's streamed conversation, prompt-only routing (no session key): (replica, cached
    share of the prompt) per turn."""
    messages = [{"role": "system", "content": _system_prompt(topic)}]
    out = []
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn} about {topic}?"})
        replica, text, usage = _streamed_turn(client, messages)
        out.append((replica, usage.prompt_tokens_details.cached_tokens / usage.prompt_tokens))
        messages.append({"role": "assistant", "content": text})
    return out


def test_an_agents_turns_stick_to_one_replica(client: Any) -> None:
    turns = _agent(client, "rivers", 4)
    assert len({replica for replica, _ in turns}) == 1, turns
    assert all(share >= 0.9 for _, share in turns[1:]), turns


def test_two_agents_with_different_prompts_spread_over_both_replicas(client: Any) -> None:
    start = threading.Barrier(2)

    def run(topic: str) -> list[tuple[str, float]]:
        start.wait()
        return _agent(client, topic, 3)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(run, ["volcanoes", "glaciers"])
    assert len({r for r, _ in a}) == 1 and len({r for r, _ in b}) == 1, (a, b)
    assert a[0][0] != b[0][0], "both agents landed on one replica"
    assert all(share >= 0.9 for _, share in a[1:] + b[1:]), (a, b)


def test_a_hot_replica_sheds_new_sessions_of_a_shared_key(client: Any) -> None:
    # many conversations sending one prompt_cache_key for their shared system prompt, as OpenAI
    # suggests: affinity alone would put every one of them on the replica that served the first
    system = {"role": "system", "content": _system_prompt("deserts")}

    def ask(question: str, max_tokens: int = 12) -> str:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[system, {"role": "user", "content": question}], max_tokens=max_tokens,
            temperature=0, prompt_cache_key="desert-agents")
        return str(raw.headers[REPLICA_HEADER])

    owner = ask("First question?")
    go = threading.Barrier(4)

    def ask_at_once(i: int) -> str:
        go.wait()
        return ask(f"Another question, number {i}?", max_tokens=24)

    with ThreadPoolExecutor(4) as pool:
        replicas = list(pool.map(ask_at_once, range(4)))
    # route_imbalance=1: the owner takes two, then one more in flight there is too many
    assert owner in replicas and len(set(replicas)) == 2, (owner, replicas)


def _engine_replicas() -> dict[str, Any]:
    """Replica id -> handle of the engine replicas' actors (found through the GCS, no dashboard needed)."""
    import ray

    named = ray.util.list_named_actors(all_namespaces=True)
    return {a["name"].rsplit("#", 1)[1]: ray.get_actor(a["name"], namespace=a["namespace"])
            for a in named if "#engine#" in a["name"]}


def _stream(client: Any, i: int) -> str:
    """'ok' when the stream completes, 'error' when it ends with an error event (the replica died)."""
    try:
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Count to fifty, run {i}."}], max_tokens=64,
            temperature=0, stream=True)
        for _ in stream:
            pass
        return "ok"
    except openai.APIError:
        return "error"


def test_killing_a_replica_loses_no_request_that_had_not_started_streaming(client: Any) -> None:
    import ray

    replicas = _engine_replicas()
    assert len(replicas) == 2
    killed, survivor = sorted(replicas)
    with ThreadPoolExecutor(8) as pool:
        # 160 tokens each (min_tokens): still generating when the replica dies, however fast a step is
        plain = [pool.submit(_chat, client, [{"role": "user", "content": f"Tell a story, number {i}."}], 160, 160)
                 for i in range(6)]
        streams = [pool.submit(_stream, client, i) for i in range(2)]
        time.sleep(1.5)  # all eight are in flight, spread over both replicas (route_imbalance=1)
        ray.kill(replicas[killed], no_restart=True)  # the process dies at once, as on a crash
        answered = [f.result(timeout=120) for f in plain]  # a hang fails here
        ended = [f.result(timeout=120) for f in streams]
    # the killed replica's share was sent again, to the survivor, and answered in full
    assert {replica for replica, _ in answered} == {survivor}
    assert all(completion.choices[0].message.content for _, completion in answered)
    assert set(ended) <= {"ok", "error"}  # a started stream ends with an error event, never hangs
    deadline = time.monotonic() + 120
    while not _replaced(killed):  # Ray Serve starts a new replica in its place
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(1)


def _replaced(killed: str) -> bool:
    from ray import serve

    engine = serve.status().applications["sluicegate"].deployments["engine"]
    alive = _engine_replicas()
    return killed not in alive and len(alive) == 2 and engine.replica_states.get("RUNNING", 0) == 2
