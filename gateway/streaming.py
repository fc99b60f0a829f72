"""Server-sent events exactly as OpenAI frames them: `data: {json}\\n\\n` per chunk, then `data: [DONE]\\n\\n`."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_MEDIA_TYPE = "text/event-stream"
DONE = "data: [DONE]\n\n"


def sse_event(payload: BaseModel | dict[str, Any]) -> str:
    """One event. Chunks keep their null fields (OpenAI sends `"usage": null`, `"finish_reason": null`)."""
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_error(body: dict[str, Any]) -> str:
    """An error after the stream began (the status line is already sent): an event with the error object."""
    return sse_event(body)


def chat_chunk_payload(chunk: Any, include_usage: bool) -> dict[str, Any]:
    """A ChatCompletionChunk as OpenAI sends it: deltas without unset keys, choices' nulls kept,
    `usage` present (null until the last chunk) only when stream_options.include_usage is on."""
    data: dict[str, Any] = chunk.model_dump(mode="json")
    for choice, model_choice in zip(data["choices"], chunk.choices, strict=True):
        choice["delta"] = model_choice.delta.model_dump(mode="json", exclude_none=True)
        for call in choice["delta"].get("tool_calls", []):
            call.setdefault("function", {})
    if not include_usage:
        data.pop("usage", None)
    return data
