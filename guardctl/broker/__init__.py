"""The warm servers: the fork server (same user) and the broker (another uid)."""
