"""The shell completion scripts, shipped in the wheel as `guardctl/bundled_completions`
(`guardctl completion bash|zsh|fish` prints them)."""
