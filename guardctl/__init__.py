"""guardctl: the gate every kubectl command of an AI agent passes through."""

__version__ = "0.1.0"
