"""MCP: hosting MCP servers' tools for the model, and the gateway's own /mcp endpoint."""
