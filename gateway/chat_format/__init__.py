"""Chat templates (template.py). Tool prompts, calls and results are written by the model's
tool-call format (grammars/tool_formats/), the same module that builds its grammar and parser."""

from sluicegate.gateway.chat_format.template import ChatRenderer

__all__ = ["ChatRenderer"]
