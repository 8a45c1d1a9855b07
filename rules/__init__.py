"""guardctl's bundled policy files (installed as the `guardctl.rules` package)."""
