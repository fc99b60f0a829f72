"""Real MCP servers the MCP tests start: stdio (calc), streamable HTTP (weather), one that crashes,
one that hangs, one that answers garbage. Each is a script run in its own process, as an operator's
MCP servers are."""
