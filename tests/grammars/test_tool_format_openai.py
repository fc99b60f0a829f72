"""Each format's output as OpenAI sees it: the streamed chunks (split anywhere) and the whole
response carry the same tool calls, with ids, names and arguments, and finish_reason tool_calls."""

from __future__ import annotations

import json
import random

import pytest

from sluicegate.engine.outputs import RequestOutput
from sluicegate.gateway.chat_output import ChatContext, ChoiceStreamer, build_completion
from tests.grammars.tool_format_cases import LAYOUTS, NESTED, ONE, PROSE


def _outs(text: str, pieces: int) -> list[RequestOutput]:
    cuts = sorted(random.Random(pieces).sample(range(1, len(text)), min(pieces, len(text)) - 1))
    parts = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    outs = [RequestOutput("r", [1], p, num_prompt_tokens=10, num_output_tokens=k + 1) for k, p in enumerate(parts)]
    outs[-1].finished, outs[-1].finish_reason = True, "stop"
    return outs


@pytest.mark.parametrize("fmt", list(LAYOUTS))
@pytest.mark.parametrize("pieces", [1, 9, 10_000])
def test_streamed_and_whole_responses_agree(fmt: str, pieces: int) -> None:
    layout = LAYOUTS[fmt]
    calls = layout.calls([ONE, NESTED])
    text = layout.prose_then(PROSE, calls) if layout.prose_then else calls
    ctx = ChatContext(id="x", created=0, model="m", parse_tools=True, include_usage=False, logprobs=False,
                      tool_format=fmt)
    outs = _outs(text, pieces)
    whole = build_completion(ctx, [outs]).choices[0]
    assert whole.finish_reason == "tool_calls"
    assert whole.message.content == (PROSE if layout.prose_then else None)
    assert whole.message.tool_calls is not None
    assert [(c.function.name, json.loads(c.function.arguments)) for c in whole.message.tool_calls] == [ONE, NESTED]

    streamer = ChoiceStreamer(ctx, 0)
    chunks = [c for out in outs for c in streamer.deltas(out)]
    assert chunks[-1].finish_reason == "tool_calls"
    content = "".join(c.delta.content or "" for c in chunks)
    assert content.strip() == (PROSE if layout.prose_then else "")
    names: dict[int, str] = {}
    args: dict[int, str] = {}
    for chunk in chunks:
        for call in chunk.delta.tool_calls or []:
            if call.id is not None:  # the first delta of a call: id, type, name
                assert call.type == "function" and call.function is not None and call.index not in names
                names[call.index] = call.function.name or ""
            args[call.index] = args.get(call.index, "") + (call.function.arguments or "" if call.function else "")
    assert names == {0: "get_weather", 1: "plan_route"}
    assert [args[i] for i in (0, 1)] == [c.function.arguments for c in whole.message.tool_calls]
