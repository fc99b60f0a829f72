"""What the tool-format tests share: the tools, sample calls, and each format's call layout written
out here independently of the format modules (so a test compares two spellings, not one with
itself), plus a copy of the default tokenizer with every format's special tokens added."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sluicegate.grammars import ToolSpec

TEMPLATES = Path(__file__).resolve().parents[1] / "data" / "templates"

WEATHER = ToolSpec.of("get_weather", {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "units": {"enum": ["C", "F"]},
        "metric": {"type": "boolean"},
    },
    "required": ["city"],
    "additionalProperties": False,
})
NOW = ToolSpec.of("now", None)
ROUTE = ToolSpec.of("plan_route", {
    "type": "object",
    "properties": {"stops": {"type": "array", "minItems": 1, "items": {
        "type": "object", "properties": {"name": {"type": "string"}, "lat": {"type": "number"}},
        "required": ["name", "lat"], "additionalProperties": False}}},
    "required": ["stops"],
    "additionalProperties": False,
})
TOOLS = (WEATHER, NOW, ROUTE)

Call = tuple[str, dict[str, Any]]
ONE: Call = ("get_weather", {"city": "Zürich 東京", "days": 3, "metric": True})
NO_ARGS: Call = ("now", {})
NESTED: Call = ("plan_route", {"stops": [{"name": "A", "lat": 1.5}, {"name": "Ü", "lat": -2}]})
BAD_NAME: Call = ("unknown", {})
BAD_ARGS: Call = ("get_weather", {"city": "x", "days": 9})  # maximum 7
MISSING: Call = ("get_weather", {"days": 2})  # city is required
PROSE = "Let me look that up for you."


def _obj(call: Call, key: str = "arguments") -> str:
    return json.dumps({"name": call[0], key: call[1]}, ensure_ascii=False)


def _py(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_py(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def _qwen_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return _py(value) if isinstance(value, bool) or value is None else json.dumps(value, ensure_ascii=False)


def _qwen(call: Call) -> str:
    params = "".join(f"<parameter={k}>\n{_qwen_value(v)}\n</parameter>\n" for k, v in call[1].items())
    return f"<tool_call>\n<function={call[0]}>\n{params}</function>\n</tool_call>"


@dataclass(frozen=True)
class Layout:
    """One format as the tests see it."""

    name: str
    calls: Callable[[list[Call]], str]  # the calls as the grammar writes them
    prose_then: Callable[[str, str], str] | None  # prose followed by calls, where auto allows it
    specials: tuple[str, ...] = ()  # the format's special tokens (matched as tokens, never as text)
    prose: Callable[[str], str] = lambda text: text  # an answer in prose (harmony: a final message)


def _list(open_: str, close: str = "") -> Callable[[list[Call]], str]:
    return lambda calls: open_ + "[" + ", ".join(_obj(c) for c in calls) + "]" + close


LAYOUTS = {layout.name: layout for layout in [
    Layout("hermes", lambda cs: "\n".join(f"<tool_call>\n{_obj(c)}\n</tool_call>" for c in cs),
           lambda p, c: p + "\n" + c),
    Layout("llama3_json", lambda cs: "; ".join(_obj(c, "parameters") for c in cs),
           lambda p, c: p + "<|python_tag|>" + c, ("<|python_tag|>",)),
    Layout("pythonic", lambda cs: "[" + ", ".join(
        f"{n}(" + ", ".join(f"{k}={_py(v)}" for k, v in a.items()) + ")" for n, a in cs) + "]", None),
    Layout("mistral", _list("[TOOL_CALLS]"), lambda p, c: p + c, ("[TOOL_CALLS]",)),
    Layout("mistral_args", lambda cs: "".join(f"[TOOL_CALLS]{n}[ARGS]{json.dumps(a, ensure_ascii=False)}"
                                               for n, a in cs),
           lambda p, c: p + c, ("[TOOL_CALLS]", "[ARGS]")),
    Layout("qwen3_coder", lambda cs: "\n".join(_qwen(c) for c in cs), lambda p, c: p + "\n" + c),
    Layout("phi4_mini", _list("<|tool_call|>", "<|/tool_call|>"), lambda p, c: p + c,
           ("<|tool_call|>", "<|/tool_call|>")),
    Layout("granite", _list("<|tool_call|>"), lambda p, c: p + c, ("<|tool_call|>",)),
    Layout("harmony", lambda cs: "<|start|>assistant".join(
        f"<|channel|>commentary to=functions.{n} <|constrain|>json<|message|>{json.dumps(a, ensure_ascii=False)}<|call|>"
        for n, a in cs),
        lambda p, c: f"<|channel|>commentary<|message|>{p}<|end|><|start|>assistant{c}",
        ("<|channel|>", "<|message|>", "<|constrain|>", "<|call|>"),
        lambda p: f"<|channel|>final<|message|>{p}"),
    Layout("deepseek_v3", lambda cs: "<｜tool▁calls▁begin｜>" + "\n".join(
        f"<｜tool▁call▁begin｜>function<｜tool▁sep｜>{n}\n```json\n{json.dumps(a, ensure_ascii=False)}\n```"
        "<｜tool▁call▁end｜>" for n, a in cs) + "<｜tool▁calls▁end｜>",
        lambda p, c: p + c, ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>")),
    Layout("deepseek_v31", lambda cs: "<｜tool▁calls▁begin｜>" + "".join(
        f"<｜tool▁call▁begin｜>{n}<｜tool▁sep｜>{json.dumps(a, ensure_ascii=False)}<｜tool▁call▁end｜>"
        for n, a in cs) + "<｜tool▁calls▁end｜>",
        lambda p, c: p + c, ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>")),
]}

# every format's special tokens, and the role tokens of the fixture templates
SPECIAL_TOKENS = [
    "<|python_tag|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "[TOOL_CALLS]", "[ARGS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
    "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "<|tool_call|>", "<|/tool_call|>", "<|tool|>", "<|/tool|>", "<|tool_response|>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",
    "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>",
    "<|start|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|call|>", "<|return|>",
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>",
    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>",
    "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>",
]


def format_tokenizer() -> Any:
    """A copy of the default model's tokenizer with the formats' special tokens added."""
    from sluicegate.engine.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return tokenizer


def template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")
