"""Chat messages -> prompt text with the model's own jinja chat template.

Templates that render `tools` themselves (Qwen2.5's) get the tools and the structured tool_calls /
tool messages; templates that ignore them (SmolLM2's) get the tool-call format's own tool prompt in
the system turn and calls/results written as text (grammars/tool_formats/). Which kind a template is, is found once
by rendering a probe with and without a tool. Rendering is a pure function of the messages, so an
agent's growing conversation renders to a growing prefix and keeps hitting the prefix cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from sluicegate.gateway.chat_format.turn_tokens import TurnTokens
from sluicegate.gateway.protocol import (
    AssistantMessage,
    ChatMessage,
    SystemMessage,
    Tool,
    ToolMessage,
    content_text,
)
from sluicegate.grammars.tool_formats import ToolFormat, format_for_template, get_format

# ChatML, for models that ship no template (base models).
DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_PROBE_TOOL = {"type": "function", "function": {"name": "sluicegate_probe_tool_3f9c",
                                                 "description": "probe", "parameters": {"type": "object"}}}


def tool_dict(tool: Tool) -> dict[str, Any]:
    """A tool as the templates (and the hermes prompt) expect it, without unset fields."""
    fn: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description is not None:
        fn["description"] = tool.function.description
    fn["parameters"] = tool.function.parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": fn}


def _arguments_object(arguments: str) -> Any:
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments  # not JSON: the template shows the string as sent


def check_unicode(text: str) -> None:
    """ValueError for text the tokenizer cannot take: JSON may carry an unpaired UTF-16 surrogate
    ("\\ud800"), which Python keeps but UTF-8 cannot encode (the tokenizer would raise TypeError: a 500)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"the text holds an unpaired UTF-16 surrogate ({text[exc.start]!r}); "
                         "send valid Unicode") from None


def _added_tokens(tokenizer: Any) -> list[str]:
    """The tokenizer's added tokens (special ones included): some name a tool-call format."""
    try:
        return list(tokenizer.get_added_vocab())
    except AttributeError:  # not a transformers tokenizer (tests' stand-ins)
        return []


class ChatRenderer:
    """Renders chat requests for one tokenizer + template (built once per engine)."""

    def __init__(self, tokenizer: Any, chat_template: str | None, tool_format: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = chat_template or DEFAULT_TEMPLATE
        self.renders_tools = self._detect_tool_support()
        # tool_format: an explicit choice (--tool-call-format) wins over what the template shows
        self.tool_format: ToolFormat = (get_format(tool_format) if tool_format else
                                        format_for_template(chat_template, _added_tokens(tokenizer)))
        # a template may list tools yet drop earlier calls (Granite 3.3's writes only `content`):
        # then calls go back as the format's text, so the model still sees what it called
        self.renders_calls = self.renders_tools and self._detect_call_support()
        self.turns = TurnTokens(tokenizer)  # answers this server generated, spliced back by prompt_ids

    def _apply(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None,
               template_kwargs: dict[str, Any] | None = None) -> str:
        out = self.tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=self.template, tokenize=False, add_generation_prompt=True,
            **(template_kwargs or {}))
        return str(out)

    def _detect_tool_support(self) -> bool:
        probe = [{"role": "user", "content": "hi"}]
        try:
            with_tools = self._apply(probe, [_PROBE_TOOL])
        except Exception:  # a template that breaks on tools does not render them
            return False
        return "sluicegate_probe_tool_3f9c" in with_tools

    def _detect_call_support(self) -> bool:
        call: dict[str, Any] = {"id": "probe3f9c", "type": "function",  # 9 characters: Mistral's ids
                                "function": {"name": "sluicegate_probe_call_7e21", "arguments": {}}}
        probe: list[dict[str, Any]] = [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "probe3f9c", "content": "ok"}, {"role": "user", "content": "and?"}]
        try:
            return "sluicegate_probe_call_7e21" in self._apply(probe, [_PROBE_TOOL])
        except Exception:  # a template that breaks on structured calls gets them as text
            return False

    def render(self, messages: Sequence[ChatMessage], tools: Sequence[Tool] | None,
               template_kwargs: dict[str, Any] | None = None) -> str:
        """The prompt text; template_kwargs are extra template variables (a request's chat_template_kwargs)."""
        tool_dicts = [tool_dict(t) for t in tools] if tools else None
        if self.renders_tools:
            text = self._apply(self._native_messages(messages), tool_dicts, template_kwargs)
        else:
            text = self._apply(self._text_tool_messages(messages, tool_dicts), None, template_kwargs)
        check_unicode(text)
        return text

    def prompt_ids(self, text: str, messages: Sequence[ChatMessage]) -> list[int]:
        """The token ids of `text`, rendered from `messages`: tokenized, with the answers this server
        generated (and remembered in self.turns) as the ids it generated for them (turn_tokens.py)."""
        return self.turns.encode(text, messages, self.encode)

    def encode(self, text: str) -> list[int]:
        # the template writes special tokens (and BOS, if any) as text: add none twice
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _call_id(self, call_id: str) -> str:
        """The id as the template accepts it: Mistral's templates refuse any id but 9 letters or
        digits (a format says so with `call_id_length`); the same id always maps the same way."""
        length = getattr(self.tool_format, "call_id_length", None)
        if not length:
            return call_id
        kept = "".join(ch for ch in call_id if ch.isascii() and ch.isalnum())
        return (kept if len(kept) >= length else kept + hashlib.sha1(call_id.encode()).hexdigest())[-length:]

    def _native_messages(self, messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for m in messages:
            role = "system" if isinstance(m, SystemMessage) else m.role
            entry: dict[str, Any] = {"role": role, "content": content_text(m.content)}
            if isinstance(m, AssistantMessage) and m.tool_calls and not self.renders_calls:
                calls = [(c.function.name, c.function.arguments) for c in m.tool_calls]
                entry["content"] = self.tool_format.render_assistant_content(entry["content"], calls)
            elif isinstance(m, AssistantMessage) and m.tool_calls:
                entry["tool_calls"] = [
                    {"id": self._call_id(c.id), "type": "function",
                     "function": {"name": c.function.name, "arguments": _arguments_object(c.function.arguments)}}
                    for c in m.tool_calls]
            if isinstance(m, ToolMessage):
                entry["tool_call_id"] = self._call_id(m.tool_call_id)
            out.append(entry)
        return out

    def _text_tool_messages(self, messages: Sequence[ChatMessage],
                            tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """For a template that ignores tools: the format writes the tool prompt, calls and results as text."""
        fmt = self.tool_format
        out: list[dict[str, Any]] = []
        pending_results: list[str] = []

        def flush_results() -> None:
            if pending_results:
                out.append({"role": "user", "content": fmt.render_tool_results(pending_results)})
                pending_results.clear()

        for m in messages:
            if isinstance(m, ToolMessage):
                pending_results.append(content_text(m.content))
                continue
            flush_results()
            if isinstance(m, SystemMessage):
                out.append({"role": "system", "content": content_text(m.content)})
            elif isinstance(m, AssistantMessage):
                calls = [(c.function.name, c.function.arguments) for c in m.tool_calls or []]
                out.append({"role": "assistant",
                            "content": fmt.render_assistant_content(content_text(m.content), calls)})
            else:
                out.append({"role": m.role, "content": content_text(m.content)})
        flush_results()
        if tools:
            prompt = fmt.tools_system_prompt(tools)
            if out and out[0]["role"] == "system":
                out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + prompt}
            else:
                out.insert(0, {"role": "system", "content": prompt})
        return out
