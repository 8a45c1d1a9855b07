"""Agent integrations: `sh -c`, the kubectl shim, the Claude Code hook, MCP."""
