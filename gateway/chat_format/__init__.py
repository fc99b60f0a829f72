"""Chat templates and the hermes tool prompt (template.py, hermes.py). Tool calls are parsed back
with grammars/tool_format.py, the same module whose constants the tool grammar is built from."""

from sluicegate.gateway.chat_format.template import ChatRenderer

__all__ = ["ChatRenderer"]
