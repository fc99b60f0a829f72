"""docs/api.md lists every field the chat and completions endpoints accept (the 400 for an
unknown field points users there)."""

from __future__ import annotations

from pathlib import Path

from sluicegate.gateway.protocol import ChatCompletionRequest, CompletionRequest

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
INTERNAL = {"mcp_tools"}  # filled from `tools` entries of type "mcp", not a field clients send


def test_every_accepted_field_is_documented() -> None:
    for model in (ChatCompletionRequest, CompletionRequest):
        for name, info in model.model_fields.items():
            if name not in INTERNAL:
                assert f"`{info.alias or name}`" in DOC, name
