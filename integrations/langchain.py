"""LangChain chat model for sluicegate: `ChatSluicegate` speaks the server's OpenAI-compatible HTTP API.

    from sluicegate.integrations.langchain import ChatSluicegate
    llm = ChatSluicegate(base_url="http://127.0.0.1:8000/v1", temperature=0)
    llm.bind_tools([get_weather], tool_choice="any").invoke("Weather in Paris?")
    llm.with_structured_output(Joke).invoke("Tell me a joke")

invoke / stream / batch, sync and async; tools with tool_choice auto / any (= required) / none / a
tool's name, enforced by the server's grammar; structured output by json_schema (default),
function_calling or json_mode; usage metadata with prompt tokens read from the prefix cache as
`input_token_details.cache_read`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any, Literal

try:
    import langchain_core  # noqa: F401  (the extra's marker: fail with the pip command below)
except ImportError as exc:
    from sluicegate.extras import missing_extra_message

    raise ImportError(missing_extra_message("langchain", "sluicegate.integrations.langchain")) from exc

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import (
    BaseChatModel,
    LangSmithParams,
    agenerate_from_stream,
    generate_from_stream,
)
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, convert_to_openai_messages
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.output_parsers.openai_tools import (
    JsonOutputKeyToolsParser,
    PydanticToolsParser,
    make_invalid_tool_call,
    parse_tool_call,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils import from_env, secret_from_env
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from sluicegate.integrations.http_client import DEFAULT_BASE_URL, SluicegateHTTP, closed_schema

StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]


def usage_metadata(usage: dict[str, Any] | None) -> UsageMetadata | None:
    """The server's OpenAI usage -> LangChain's, with prefix-cache hits as cache_read."""
    if not usage:
        return None
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return UsageMetadata(input_tokens=usage["prompt_tokens"], output_tokens=usage["completion_tokens"],
                         total_tokens=usage["total_tokens"], input_token_details={"cache_read": cached})


def tool_choice_value(tool_choice: Any, tools: Sequence[dict[str, Any]]) -> Any:
    """LangChain's tool_choice spellings -> OpenAI's ("any"/True mean required; a name forces that tool)."""
    if tool_choice is None or tool_choice is False:
        return None
    if tool_choice is True or tool_choice == "any":
        return "required"
    if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "required"):
        names = [t["function"]["name"] for t in tools]
        if tool_choice not in names:
            raise ValueError(f"tool_choice {tool_choice!r} names none of the bound tools {names}")
        return {"type": "function", "function": {"name": tool_choice}}
    return tool_choice


def _message_from_choice(choice: dict[str, Any]) -> AIMessage:
    message = choice["message"]
    calls, invalid = [], []
    for raw in message.get("tool_calls") or []:
        try:
            parsed = parse_tool_call(raw, return_id=True)
            if parsed is not None:
                calls.append(parsed)
        except Exception as exc:  # arguments that are not JSON (never under the tool grammar)
            invalid.append(make_invalid_tool_call(raw, str(exc)))
    return AIMessage(content=message.get("content") or "", tool_calls=calls, invalid_tool_calls=invalid)


def _schema_name(schema: dict[str, Any]) -> str:
    return re.sub(r"[^A-Za-z0-9_\-]", "_", str(schema.get("title") or "response"))[:64]


class ChatSluicegate(BaseChatModel):
    """A sluicegate server's chat model. Configure with arguments or SLUICEGATE_BASE_URL / SLUICEGATE_API_KEY."""

    model_config = ConfigDict(populate_by_name=True)

    model: str | None = Field(default=None, alias="model_name")
    """The served model's id; None: the server's (asked once from /v1/models)."""
    base_url: str = Field(default_factory=from_env("SLUICEGATE_BASE_URL", default=DEFAULT_BASE_URL))
    """The server, e.g. http://127.0.0.1:8000/v1 (a URL without /v1 gets it added)."""
    api_key: SecretStr | None = Field(default_factory=secret_from_env("SLUICEGATE_API_KEY", default=None))
    """Sent as `Authorization: Bearer` when the server requires a key."""
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    prompt_cache_key: str | None = None
    """Groups an agent's requests that share a prompt prefix (per-key cache metrics, replica routing)."""
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    """"24h" pins the prompt's cached prefix on the server (evicted after every unpinned block)."""
    timeout: float | None = 120.0
    max_retries: int = 2
    streaming: bool = False
    """invoke() streams underneath (callbacks get tokens as they come)."""
    stream_usage: bool = True
    """Ask for usage at the end of streams."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other request fields sent as is (top_k, min_p, repetition_penalty, ...)."""
    parallel_tool_calls: bool | None = None
    """Default for bind_tools' `parallel_tool_calls` (None: the server's default, parallel allowed)."""
    strict: bool = True
    """Default for bind_tools / with_structured_output's `strict`. Tool arguments are closed objects on
    the server either way; with method="json_schema" it closes the output schema (see closed_schema)."""

    _served_model: str | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "sluicegate-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="sluicegate", ls_model_name=kwargs.get("model") or self.model or
                                 self._served_model or "sluicegate", ls_model_type="chat")
        if self.temperature is not None:
            params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        if self.max_tokens is not None:
            params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    @property
    def http(self) -> SluicegateHTTP:
        key = self.api_key.get_secret_value() if self.api_key else None
        return SluicegateHTTP(self.base_url, key, self.timeout, self.max_retries)

    # ---- request bodies -------------------------------------------------------------------------
    def _model_id(self) -> str:
        if self.model:
            return self.model
        if self._served_model is None:
            self._served_model = str(self.http.get("/models")["data"][0]["id"])
        return self._served_model

    async def _amodel_id(self) -> str:
        if self.model:
            return self.model
        if self._served_model is None:
            self._served_model = str((await self.http.aget("/models"))["data"][0]["id"])
        return self._served_model

    def _body(self, model: str, messages: list[BaseMessage], stop: list[str] | None,
              kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = {k: v for k, v in kwargs.items() if k != "model"}
        body = {"model": model, "messages": convert_to_openai_messages(messages),
                "temperature": self.temperature, "max_tokens": self.max_tokens, "top_p": self.top_p,
                "seed": self.seed, "stop": stop or self.stop or None, "prompt_cache_key": self.prompt_cache_key,
                "prompt_cache_retention": self.prompt_cache_retention, **self.model_kwargs, **kwargs}
        return {k: v for k, v in body.items() if v is not None}

    def _stream_body(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "stream_options": {"include_usage": True}} if self.stream_usage else body

    @staticmethod
    def _result(response: dict[str, Any]) -> ChatResult:
        usage = usage_metadata(response.get("usage"))
        generations = []
        for choice in response["choices"]:
            message = _message_from_choice(choice)
            message.usage_metadata = usage
            message.id = response.get("id")
            message.response_metadata = {"model_name": response.get("model"), "model_provider": "sluicegate",
                                         "finish_reason": choice.get("finish_reason")}
            generations.append(ChatGeneration(message=message,
                                              generation_info={"finish_reason": choice.get("finish_reason")}))
        return ChatResult(generations=generations, llm_output={"model_name": response.get("model")})

    @staticmethod
    def _chunk(payload: dict[str, Any]) -> ChatGenerationChunk | None:
        """One SSE chunk -> a LangChain chunk (content, tool-call fragments, finish, usage)."""
        usage = usage_metadata(payload.get("usage"))
        if not payload.get("choices"):
            if usage is None:
                return None
            return ChatGenerationChunk(message=AIMessageChunk(content="", usage_metadata=usage, id=payload.get("id")))
        choice = payload["choices"][0]
        delta = choice.get("delta") or {}
        chunks = [tool_call_chunk(name=(c.get("function") or {}).get("name"),
                                  args=(c.get("function") or {}).get("arguments"), id=c.get("id"),
                                  index=c.get("index")) for c in delta.get("tool_calls") or []]
        reason = choice.get("finish_reason")
        metadata = {"finish_reason": reason, "model_name": payload.get("model"),
                    "model_provider": "sluicegate"} if reason else {"model_provider": "sluicegate"}
        message = AIMessageChunk(content=delta.get("content") or "", tool_call_chunks=chunks,
                                 response_metadata=metadata, usage_metadata=usage, id=payload.get("id"))
        return ChatGenerationChunk(message=message, generation_info={"finish_reason": reason} if reason else None)

    # ---- BaseChatModel --------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming:
            return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        model = kwargs.get("model") or self._model_id()
        return self._result(self.http.post("/chat/completions", self._body(model, messages, stop, kwargs)))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self.streaming:
            return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))
        model = kwargs.get("model") or await self._amodel_id()
        return self._result(await self.http.apost("/chat/completions", self._body(model, messages, stop, kwargs)))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        model = kwargs.get("model") or self._model_id()
        body = self._stream_body(self._body(model, messages, stop, kwargs))
        for payload in self.http.stream("/chat/completions", body):
            chunk = self._chunk(payload)
            if chunk is None:
                continue
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        model = kwargs.get("model") or await self._amodel_id()
        body = self._stream_body(self._body(model, messages, stop, kwargs))
        async for payload in self.http.astream("/chat/completions", body):
            chunk = self._chunk(payload)
            if chunk is None:
                continue
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    # ---- tools and structured output ------------------------------------------------------------
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], *,
                   tool_choice: dict[str, Any] | str | bool | None = None,
                   parallel_tool_calls: bool | None = None, strict: bool | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (any form LangChain converts to OpenAI's). tool_choice: "auto", "none",
        "any" / "required" / True (at least one call), or a tool's name (that tool)."""
        strict = self.strict if strict is None else strict
        formatted = [convert_to_openai_tool(t, strict=strict) for t in tools]  # the server closes their schemas
        choice = tool_choice_value(tool_choice, formatted)
        if choice is not None:
            kwargs["tool_choice"] = choice
        parallel = self.parallel_tool_calls if parallel_tool_calls is None else parallel_tool_calls
        if parallel is not None:
            kwargs["parallel_tool_calls"] = parallel
        return super().bind(tools=formatted, **kwargs)

    def with_structured_output(self, schema: dict[str, Any] | type, *,  # type: ignore[override]
                               method: StructuredMethod = "json_schema", include_raw: bool = False,
                               strict: bool | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, Any]:
        """Output parsed into `schema` (pydantic class, TypedDict, JSON schema or OpenAI tool dict).

        json_schema (default): the server's grammar makes the reply valid under the schema.
        function_calling: one forced call of a tool whose parameters are the schema.
        json_mode: any JSON object (the prompt must describe the keys)."""
        if kwargs:
            raise ValueError(f"unexpected arguments: {sorted(kwargs)}")
        is_pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        strict = self.strict if strict is None else strict
        ls_format = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            tool = convert_to_openai_tool(schema, strict=strict)
            name = tool["function"]["name"]
            llm = self.bind_tools([tool], tool_choice=name, parallel_tool_calls=False,
                                  ls_structured_output_format=ls_format)
            parser = (PydanticToolsParser(tools=[schema], first_tool_only=True) if is_pydantic  # type: ignore[list-item]
                      else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True))
        elif method in ("json_schema", "json_mode"):
            if method == "json_schema":
                json_schema = convert_to_json_schema(schema)
                json_schema = closed_schema(json_schema) if strict else json_schema
                response_format: dict[str, Any] = {"type": "json_schema", "json_schema": {
                    "name": _schema_name(json_schema), "schema": json_schema, "strict": strict}}
            else:
                response_format = {"type": "json_object"}
            llm = self.bind(response_format=response_format, ls_structured_output_format=ls_format)
            parser = PydanticOutputParser(pydantic_object=schema) if is_pydantic else JsonOutputParser()  # type: ignore[arg-type]
        else:
            raise ValueError(f"method must be json_schema, function_calling or json_mode, got {method!r}")
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=llm) | parse.with_fallbacks([fallback], exception_key="parsing_error")
