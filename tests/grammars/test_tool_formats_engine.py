"""Every format end to end through the engine: a tiny random-weight model whose tokenizer has the
formats' special tokens, a named tool call under each format's grammar, the output detokenized as
the gateway asks for tool-grammar requests (special tokens kept), read back by the format's
parser. What a random model writes is whatever the grammar lets through: for a no-argument tool
named in tool_choice that is the whole call, special tokens included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sluicegate.engine.params import SamplingParams
from sluicegate.grammars import ToolCalls
from sluicegate.grammars.tool_formats import parse_tool_calls
from tests.grammars.tool_format_cases import LAYOUTS, NOW, WEATHER, format_tokenizer
from tests.model_factory import make_tiny_hf_model


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from sluicegate.engine.llm import build_config
    from sluicegate.engine.llm_engine import LLMEngine

    tokenizer = format_tokenizer()
    folder: Path = make_tiny_hf_model(tmp_path_factory.mktemp("formats") / "tiny", "llama", seed=5,
                                      vocab_size=len(tokenizer))
    tokenizer.save_pretrained(str(folder))  # the default tokenizer plus the formats' special tokens
    return LLMEngine(build_config(str(folder), dtype="float32", device="cpu", kv_cache_memory_gb=0.02))


def test_named_call_in_every_format_through_the_engine(engine: Any) -> None:
    prompt = engine.tokenizer("What time is it?", add_special_tokens=False).input_ids
    formats = list(LAYOUTS)
    ids = {}
    for fmt in formats:
        params = SamplingParams(max_tokens=48, temperature=0.0, skip_special_tokens=False,
                                grammar=ToolCalls((WEATHER, NOW), "now", False, fmt))
        ids[engine.add_request(prompt, params)] = fmt
    text = {rid: "" for rid in ids}
    reasons: dict[str, str | None] = {}
    while engine.has_unfinished():
        for out in engine.step():
            text[out.request_id] += out.new_text
            if out.finished:
                reasons[out.request_id] = out.finish_reason
    for rid, fmt in ids.items():
        content, calls = parse_tool_calls(text[rid], fmt)
        if fmt == "harmony" and reasons[rid] == "length":
            continue  # harmony may reason first (free text): a random model can ramble to max_tokens
        assert reasons[rid] == "stop", (fmt, text[rid])
        assert (content, calls) == ("", [("now", "{}")]), (fmt, text[rid])
        assert text[rid].endswith(LAYOUTS[fmt].calls([("now", {})])), (fmt, text[rid])
