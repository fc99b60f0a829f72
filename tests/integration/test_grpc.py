"""gRPC API against a live server (real channels): every rpc, streamed tool calls, structured
output, errors as status codes, cancellation and deadlines (the engine request is aborted and its
blocks freed), health and reflection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sluicegate.proto.sluicegate.v1 import inference_pb2 as pb
from sluicegate.proto.sluicegate.v1 import inference_pb2_grpc as pb_grpc
from tests.integration.conftest import LiveServers
from tests.integration.grpc_support import GatewayApp, serve_app

pytestmark = pytest.mark.slow

KEY = "grpc-key-456"
WEATHER = pb.Tool(name="get_weather", description="Current weather in a city",
                  parameters=json.dumps({"type": "object", "properties": {"city": {"type": "string"}},
                                         "required": ["city"]}))
TIME = pb.Tool(name="get_time", description="Current time in a city",
               parameters=json.dumps({"type": "object", "properties": {"city": {"type": "string"}},
                                      "required": ["city"]}))


@pytest.fixture(scope="module")
def gw(live: LiveServers) -> Iterator[GatewayApp]:
    with serve_app(live) as app:
        yield app


@pytest.fixture(scope="module")
def stub(gw: GatewayApp) -> Iterator[pb_grpc.InferenceStub]:
    with grpc.insecure_channel(gw.grpc_target) as channel:
        yield pb_grpc.InferenceStub(channel)


def _idle(live: LiveServers) -> None:
    live.wait_idle(timeout=15)


def _greedy(max_tokens: int) -> pb.SamplingParams:
    return pb.SamplingParams(max_tokens=max_tokens, temperature=0.0)


def test_list_models(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    [model] = stub.ListModels(pb.ListModelsRequest(), timeout=10).models
    assert model.id == live.engine.model_name and model.max_model_len == live.engine.max_model_len


def test_generate_text_matches_http(stub: pb_grpc.InferenceStub, live: LiveServers, model_name: str) -> None:
    import httpx

    msgs = list(stub.Generate(pb.GenerateRequest(text="The capital of France is", sampling=_greedy(8)), timeout=60))
    assert all(m.finish_reason == pb.FINISH_REASON_UNSPECIFIED for m in msgs[:-1])
    last = msgs[-1]
    assert last.finish_reason in (pb.FINISH_REASON_LENGTH, pb.FINISH_REASON_STOP)
    text = "".join(m.text for m in msgs)
    ids = [i for m in msgs for i in m.token_ids]
    assert last.usage.completion_tokens == len(ids) and last.usage.prompt_tokens > 0
    assert text
    http = httpx.post(f"{live.url}/v1/completions", timeout=60, json={
        "model": model_name, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}).json()
    assert http["usage"]["prompt_tokens"] == last.usage.prompt_tokens  # tokenized as /v1/completions does
    _idle(live)


def test_generate_token_ids_and_constraints(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    ids = list(live.engine.tokenizer("Answer yes or no:")["input_ids"])
    cases = {
        "choice": pb.Constraint(choice=pb.ChoiceOptions(options=["yes", "no"])),
        "regex": pb.Constraint(regex=r"[0-9]{3}"),
        "json_schema": pb.Constraint(json_schema=json.dumps(
            {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
             "additionalProperties": False})),
    }
    results = {}
    for name, constraint in cases.items():
        req = pb.GenerateRequest(token_ids=pb.TokenIds(ids=ids), sampling=_greedy(20), constraint=constraint)
        msgs = list(stub.Generate(req, timeout=60))
        assert msgs[-1].finish_reason == pb.FINISH_REASON_STOP, name
        results[name] = "".join(m.text for m in msgs)
    assert results["choice"] in ("yes", "no")
    assert len(results["regex"]) == 3 and results["regex"].isdigit()
    assert isinstance(json.loads(results["json_schema"])["n"], int)
    _idle(live)


def _chat(stub: pb_grpc.InferenceStub, req: pb.ChatRequest) -> tuple[list[pb.ChatDelta], pb.ChatDone]:
    msgs = list(stub.Chat(req, timeout=90))
    assert msgs[-1].WhichOneof("event") == "done" and all(m.WhichOneof("event") == "delta" for m in msgs[:-1])
    return [m.delta for m in msgs[:-1]], msgs[-1].done


def test_chat_text_and_prefix_cache(stub: pb_grpc.InferenceStub, live: LiveServers, model_name: str) -> None:
    import httpx

    system = "You are a helpful assistant. " * 20  # a few full KV blocks to hit on the second turn
    msgs = [pb.ChatMessage(role="system", content=system), pb.ChatMessage(role="user", content="Say hi.")]
    deltas, done = _chat(stub, pb.ChatRequest(messages=msgs, sampling=_greedy(6)))
    assert "".join(d.text for d in deltas) == done.message.content and done.message.role == "assistant"
    assert done.finish_reason in (pb.FINISH_REASON_STOP, pb.FINISH_REASON_LENGTH)
    u = done.usage
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens and u.completion_tokens >= 1
    pinned = _greedy(6)
    pinned.prompt_cache_key, pinned.prompt_cache_retention = "grpc-agent", "24h"  # accepted, pinned
    _, again = _chat(stub, pb.ChatRequest(messages=msgs, sampling=pinned))
    assert again.usage.cached_tokens > 0 and again.usage.prompt_tokens == u.prompt_tokens
    http = httpx.post(f"{live.url}/v1/chat/completions", timeout=60, json={
        "model": model_name, "max_tokens": 1, "messages": [{"role": "system", "content": system},
                                                           {"role": "user", "content": "Say hi."}]}).json()
    # rendered as HTTP renders it: the same prompt, served from the cache gRPC filled
    assert http["usage"]["prompt_tokens"] == u.prompt_tokens
    assert http["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    _idle(live)


def test_chat_streams_parallel_tool_calls(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    req = pb.ChatRequest(
        messages=[pb.ChatMessage(role="user", content="What is the weather and the time in Paris?")],
        tools=[WEATHER, TIME], tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_REQUIRED),
        parallel_tool_calls=True, sampling=_greedy(120))
    deltas, done = _chat(stub, req)
    assert done.finish_reason == pb.FINISH_REASON_TOOL_CALLS and done.message.tool_calls
    streamed: dict[int, dict[str, str]] = {}
    for d in deltas:
        for f in d.tool_calls:
            entry = streamed.setdefault(f.index, {"id": f.id, "name": f.name, "arguments": ""})
            entry["arguments"] += f.arguments
    assert len(streamed) == len(done.message.tool_calls)
    for i, call in enumerate(done.message.tool_calls):
        assert call.name in ("get_weather", "get_time") and call.id.startswith("call_")
        assert streamed[i] == {"id": call.id, "name": call.name, "arguments": call.arguments}
        assert isinstance(json.loads(call.arguments)["city"], str)  # the grammar makes it valid
    _idle(live)


def test_chat_named_tool_then_result_turn(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    user = pb.ChatMessage(role="user", content="Weather in Oslo?")
    req = pb.ChatRequest(messages=[user], tools=[WEATHER, TIME], tool_choice=pb.ToolChoice(function="get_time"),
                         sampling=_greedy(60))
    _, done = _chat(stub, req)
    [call] = done.message.tool_calls
    assert call.name == "get_time"
    result = pb.ChatMessage(role="tool", tool_call_id=call.id, content='{"time": "12:00"}')
    follow = pb.ChatRequest(messages=[user, done.message, result], tools=[WEATHER, TIME],
                            tool_choice=pb.ToolChoice(mode=pb.ToolChoice.MODE_NONE), sampling=_greedy(8))
    _, answer = _chat(stub, follow)
    assert not answer.message.tool_calls and answer.message.content
    assert answer.usage.cached_tokens > 0  # the first turn's prompt is a prefix of the second's
    _idle(live)


def test_chat_response_format(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    schema = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "blue"]}},
              "required": ["color"], "additionalProperties": False}
    req = pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="Pick a color.")], sampling=_greedy(30),
                         response_format=pb.Constraint(json_schema=json.dumps(schema)))
    _, done = _chat(stub, req)
    assert json.loads(done.message.content)["color"] in ("red", "blue")
    _idle(live)


@pytest.mark.parametrize("req, fragment", [
    (pb.ChatRequest(), "messages"),
    (pb.ChatRequest(messages=[pb.ChatMessage(role="wizard", content="x")]), "messages"),
    (pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="x")],
                    sampling=pb.SamplingParams(temperature=5.0)), "temperature"),
    (pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="x")], tools=[WEATHER],
                    tool_choice=pb.ToolChoice(function="nope")), "nope"),
    (pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="x")],
                    tools=[pb.Tool(name="t", parameters="{not json")]), "tools[0].parameters"),
    (pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="x")], tools=[WEATHER],
                    response_format=pb.Constraint(json_object=True)), "response_format"),
    (pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="x")],
                    sampling=pb.SamplingParams(prompt_cache_retention="forever")), "prompt_cache_retention"),
])
def test_chat_invalid_argument(stub: pb_grpc.InferenceStub, req: pb.ChatRequest, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Chat(req, timeout=30))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert fragment in err.value.details()


def test_generate_invalid_argument(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    too_long = pb.TokenIds(ids=[1] * (live.engine.max_model_len + 5))
    for req in (pb.GenerateRequest(), pb.GenerateRequest(token_ids=too_long),
                pb.GenerateRequest(text="x", constraint=pb.Constraint(json_schema='{"type": "nonsense"}'))):
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Generate(req, timeout=30))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(pb.GenerateRequest(text="x", model="other-model"), timeout=30))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    _idle(live)


def _long(request_id: str = "") -> pb.GenerateRequest:
    return pb.GenerateRequest(request_id=request_id, text="Tell me a long story.",
                              sampling=pb.SamplingParams(max_tokens=2000, ignore_eos=True, temperature=0.8))


def _running(live: LiveServers) -> int:
    stats = live.engine.stats()
    return int(stats.num_running + stats.num_waiting)


def _wait_freed(live: LiveServers) -> None:
    deadline = time.monotonic() + 10
    while _running(live) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(live) == 0
    live.engine.check_integrity()


def test_cancel_aborts_and_frees_blocks(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    call = stub.Generate(_long(), timeout=120)
    for i, _ in enumerate(call):
        if i >= 3:
            break
    assert _running(live) == 1
    call.cancel()
    _wait_freed(live)


def test_deadline_exceeded_aborts(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub.Generate(_long(), timeout=1.0))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    _wait_freed(live)


def test_abort_rpc(stub: pb_grpc.InferenceStub, live: LiveServers) -> None:
    call = stub.Generate(_long("story-1"), timeout=120)
    first = next(call)
    assert first.request_id == "story-1"
    with pytest.raises(grpc.RpcError) as dup:
        list(stub.Generate(_long("story-1"), timeout=30))
    assert dup.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stub.Abort(pb.AbortRequest(request_id="story-1"), timeout=10).found
    *_, last = call
    assert last.finish_reason == pb.FINISH_REASON_ABORT and last.usage.completion_tokens < 2000
    assert not stub.Abort(pb.AbortRequest(request_id="story-1"), timeout=10).found
    _wait_freed(live)


def test_queue_full_is_resource_exhausted(live: LiveServers) -> None:
    import asyncio

    from sluicegate.gateway import grpc_server
    from sluicegate.gateway.settings import ServeSettings

    # the `full` engine of conftest.py queues nothing: every request is refused
    full = live.servers[2].config.app.state.sg.engine
    assert live.loop is not None
    settings = ServeSettings(host="127.0.0.1", grpc_port=0)
    handle = asyncio.run_coroutine_threadsafe(grpc_server.start(full, settings, "m"), live.loop).result(60)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{handle.port}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                list(pb_grpc.InferenceStub(channel).Generate(pb.GenerateRequest(text="hi"), timeout=30))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ("retry-after", "1") in (err.value.trailing_metadata() or ())
    finally:
        asyncio.run_coroutine_threadsafe(handle.stop(), live.loop).result(30)


def test_api_key(live: LiveServers) -> None:
    with serve_app(live, api_key=KEY) as keyed, grpc.insecure_channel(keyed.grpc_target) as channel:
        stub = pb_grpc.InferenceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as err:
                stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as err:
                list(stub.Generate(pb.GenerateRequest(text="hi"), metadata=metadata, timeout=10))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for metadata in ((("authorization", f"Bearer {KEY}"),), (("x-api-key", KEY),)):
            assert stub.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=10).models
        # probes need no key
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_health_serving_then_not_serving_while_draining(live: LiveServers) -> None:
    with serve_app(live) as extra:
        channel = grpc.insecure_channel(extra.grpc_target)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "sluicegate.v1.Inference"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(service="sluicegate.v1.Inference"), timeout=60)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    # the app stopped: the watcher saw NOT_SERVING before the server went away
    statuses = []
    try:
        for resp in watch:
            statuses.append(resp.status)
    except grpc.RpcError:
        pass
    channel.close()
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses


def test_reflection_lists_services(gw: GatewayApp) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(gw.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [resp] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=10))
        names = {s.name for s in resp.list_services_response.service}
        assert {"sluicegate.v1.Inference", "grpc.health.v1.Health"} <= names
        req = reflection_pb2.ServerReflectionRequest(file_containing_symbol="sluicegate.v1.Inference")
        [resp] = list(stub.ServerReflectionInfo(iter([req]), timeout=10))
        assert resp.file_descriptor_response.file_descriptor_proto


def test_async_client_cancel(gw: GatewayApp, live: LiveServers) -> None:
    import asyncio

    async def run() -> int:
        async with grpc.aio.insecure_channel(gw.grpc_target) as channel:
            stub = pb_grpc.InferenceStub(channel)
            call = stub.Chat(pb.ChatRequest(messages=[pb.ChatMessage(role="user", content="Tell a long story.")],
                                            sampling=pb.SamplingParams(max_tokens=2000, ignore_eos=True)))
            got = 0
            async for _ in call:
                got += 1
                if got >= 3:
                    break
            call.cancel()
            return got

    assert asyncio.run(run()) == 3
    _wait_freed(live)
