"""LlamaIndex LLM for sluicegate: `Sluicegate` speaks the server's OpenAI-compatible HTTP API.

    from sluicegate.integrations.llama_index import Sluicegate
    llm = Sluicegate(base_url="http://127.0.0.1:8000/v1", temperature=0)
    llm.chat_with_tools([add_tool], user_msg="What is 2 + 3?", tool_required=True)
    llm.structured_predict(Invoice, PromptTemplate("Extract: {text}"), text=...)

A function-calling chat model: chat / complete / stream / async variants, chat_with_tools (tool
calls are forced valid by the server's grammar), get_tool_calls_from_response, structured_predict
(through a forced tool call), and metadata with the server's context window. Assistant tool calls
travel in `message.additional_kwargs["tool_calls"]` (OpenAI's shape) and tool results are
`role="tool"` messages with `additional_kwargs["tool_call_id"]`, as LlamaIndex's agents write them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

try:
    import llama_index.core  # noqa: F401  (the extra's marker: fail with the pip command below)
except ImportError as exc:
    from sluicegate.extras import missing_extra_message

    raise ImportError(missing_extra_message("llama-index", "sluicegate.integrations.llama_index")) from exc

from llama_index.core.base.llms.generic_utils import (
    achat_to_completion_decorator,
    astream_chat_to_completion_decorator,
    chat_to_completion_decorator,
    stream_chat_to_completion_decorator,
)
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from sluicegate.integrations.http_client import DEFAULT_BASE_URL, SluicegateHTTP

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool


def _tool_calls_of(message: ChatMessage) -> list[dict[str, Any]]:
    """An assistant message's calls in OpenAI's shape (from additional_kwargs or ToolCallBlocks)."""
    calls = list(message.additional_kwargs.get("tool_calls") or [])
    for i, block in enumerate(b for b in message.blocks if isinstance(b, ToolCallBlock)):
        args = block.tool_kwargs if isinstance(block.tool_kwargs, str) else json.dumps(block.tool_kwargs)
        calls.append({"id": block.tool_call_id or f"call_{i}", "type": "function",
                      "function": {"name": block.tool_name, "arguments": args}})
    return [c if isinstance(c, dict) else c.model_dump() for c in calls]


def to_openai_message(message: ChatMessage) -> dict[str, Any]:
    role = message.role.value if isinstance(message.role, MessageRole) else str(message.role)
    out: dict[str, Any] = {"role": role, "content": message.content or ""}
    if role == "assistant":
        calls = _tool_calls_of(message)
        if calls:
            out["tool_calls"] = calls
            out["content"] = message.content or None
    if role == "tool":
        out["tool_call_id"] = message.additional_kwargs.get("tool_call_id", "")
    return out


def _parse_args(text: str) -> dict[str, Any]:
    """Arguments JSON -> dict; a stream's partial arguments (not yet JSON) -> {}."""
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _usage_kwargs(usage: dict[str, Any] | None) -> dict[str, int]:
    if not usage:
        return {}
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"], "cached_tokens": cached}


class _StreamState:
    """Accumulates a streamed reply: content, and tool calls assembled from their fragments."""

    def __init__(self) -> None:
        self.content = ""
        self.calls: list[dict[str, Any]] = []
        self.usage: dict[str, int] = {}

    def add(self, payload: dict[str, Any]) -> str:
        self.usage = _usage_kwargs(payload.get("usage")) or self.usage
        text = ""
        for choice in payload.get("choices") or []:
            delta = choice.get("delta") or {}
            text += delta.get("content") or ""
            for frag in delta.get("tool_calls") or []:
                while frag["index"] >= len(self.calls):
                    self.calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                call = self.calls[frag["index"]]
                fn = frag.get("function") or {}
                call["id"] = frag.get("id") or call["id"]
                call["function"]["name"] += fn.get("name") or ""
                call["function"]["arguments"] += fn.get("arguments") or ""
        self.content += text
        return text

    def response(self, delta: str, raw: dict[str, Any]) -> ChatResponse:
        kwargs: dict[str, Any] = {"tool_calls": [json.loads(json.dumps(c)) for c in self.calls]} if self.calls else {}
        message = ChatMessage(role=MessageRole.ASSISTANT, content=self.content, additional_kwargs=kwargs)
        return ChatResponse(message=message, delta=delta, raw=raw, additional_kwargs=dict(self.usage))


class Sluicegate(FunctionCallingLLM):
    """A sluicegate server's model. Configure with arguments or SLUICEGATE_BASE_URL / SLUICEGATE_API_KEY."""

    model: str | None = Field(default=None, description="The served model's id (None: the server's).")
    base_url: str = Field(default_factory=lambda: os.environ.get("SLUICEGATE_BASE_URL", DEFAULT_BASE_URL),
                          description="The server, e.g. http://127.0.0.1:8000/v1.")
    api_key: str | None = Field(default_factory=lambda: os.environ.get("SLUICEGATE_API_KEY"),
                                description="Sent as `Authorization: Bearer` when the server requires one.")
    temperature: float | None = Field(default=None, description="Sampling temperature (None: the server's, 1).")
    max_tokens: int | None = Field(default=None, description="Most tokens per reply (None: to the context limit).")
    prompt_cache_key: str | None = Field(default=None, description="Groups an agent's requests that share "
                                         "a prompt prefix (per-key cache metrics, replica routing).")
    prompt_cache_retention: Literal["in_memory", "24h"] | None = Field(
        default=None, description='"24h" pins the prompt\'s cached prefix on the server.')
    timeout: float = Field(default=120.0, description="Seconds per HTTP request.")
    max_retries: int = Field(default=2, description="Retries of failed connections.")
    additional_kwargs: dict[str, Any] = Field(default_factory=dict, description="Other request fields, sent as is.")

    _card: dict[str, Any] | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "Sluicegate"

    @property
    def http(self) -> SluicegateHTTP:
        return SluicegateHTTP(self.base_url, self.api_key, self.timeout, self.max_retries)

    def _model_card(self) -> dict[str, Any]:
        """The served model's /v1/models entry (asked once)."""
        if self._card is None:
            cards = self.http.get("/models")["data"]
            self._card = next((c for c in cards if c["id"] == self.model), cards[0]) if self.model else cards[0]
        return self._card

    @property
    def metadata(self) -> LLMMetadata:
        card = self._model_card()
        return LLMMetadata(context_window=int(card.get("max_model_len") or 2048), num_output=self.max_tokens or -1,
                           is_chat_model=True, is_function_calling_model=True, model_name=str(card["id"]))

    def _body(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        body = {"model": self.model or self._model_card()["id"], "temperature": self.temperature,
                "max_tokens": self.max_tokens, "prompt_cache_key": self.prompt_cache_key,
                "prompt_cache_retention": self.prompt_cache_retention, **self.additional_kwargs, **kwargs,
                "messages": [to_openai_message(m) for m in messages]}
        return {k: v for k, v in body.items() if v is not None}

    @staticmethod
    def _chat_response(raw: dict[str, Any]) -> ChatResponse:
        message = raw["choices"][0]["message"]
        kwargs = {"tool_calls": message["tool_calls"]} if message.get("tool_calls") else {}
        chat = ChatMessage(role=MessageRole.ASSISTANT, content=message.get("content") or "", additional_kwargs=kwargs)
        return ChatResponse(message=chat, raw=raw, additional_kwargs=_usage_kwargs(raw.get("usage")))

    def _stream_body(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self._body(messages, kwargs), "stream_options": {"include_usage": True}}

    # ---- chat -----------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat_response(self.http.post("/chat/completions", self._body(messages, kwargs)))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        body = self._body(messages, kwargs)
        return self._chat_response(await self.http.apost("/chat/completions", body))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        body = self._stream_body(messages, kwargs)

        def gen() -> ChatResponseGen:
            state = _StreamState()
            for payload in self.http.stream("/chat/completions", body):
                delta = state.add(payload)
                yield state.response(delta, payload)

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        body = self._stream_body(messages, kwargs)

        async def gen() -> ChatResponseAsyncGen:
            state = _StreamState()
            async for payload in self.http.astream("/chat/completions", body):
                delta = state.add(payload)
                yield state.response(delta, payload)

        return gen()

    # ---- completion: a one-message chat (this is a chat model) ---------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return chat_to_completion_decorator(self.chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await achat_to_completion_decorator(self.achat)(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        return stream_chat_to_completion_decorator(self.stream_chat)(prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        return await astream_chat_to_completion_decorator(self.astream_chat)(prompt, **kwargs)

    # ---- tools ----------------------------------------------------------------------------------
    def _prepare_chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                                 chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                 tool_choice: str | dict[str, Any] | None = None,
                                 **kwargs: Any) -> dict[str, Any]:
        """tool_choice: "auto" / "none" / "required" or a tool's name; tool_required means "required"."""
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        specs = [t.metadata.to_openai_tool(skip_length_check=True) for t in tools]
        choice: Any = tool_choice or ("required" if tool_required else "auto")
        if isinstance(choice, str) and choice not in ("auto", "none", "required"):
            choice = {"type": "function", "function": {"name": choice}}
        chat_kwargs: dict[str, Any] = {"messages": messages, **kwargs}
        if specs:
            chat_kwargs.update(tools=specs, tool_choice=choice, parallel_tool_calls=allow_parallel_tool_calls)
        return chat_kwargs

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[BaseTool],
                                           allow_parallel_tool_calls: bool = False,
                                           **kwargs: Any) -> ChatResponse:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not allow_parallel_tool_calls and len(calls) > 1:  # the grammar already allows one only
            response.message.additional_kwargs["tool_calls"] = calls[:1]
        return response

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        calls = response.message.additional_kwargs.get("tool_calls") or []
        if not calls and error_on_no_tool_call:
            raise ValueError(f"Expected at least one tool call, got none: {response.message.content!r}")
        return [ToolSelection(tool_id=c.get("id") or "", tool_name=c["function"]["name"],
                              tool_kwargs=_parse_args(c["function"].get("arguments") or ""))
                for c in calls if c["function"].get("name")]
