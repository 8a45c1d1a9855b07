"""guardctl's own command names (`data/guardctl_commands.txt`).

`guardctl WORD …` with any other WORD is a kubectl invocation. Read by `normalize` (which
program a line runs) and by the fork client on every command, so with `os` alone.
"""

import os

_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "guardctl_commands.txt")
_names: "frozenset[str] | None" = None


def guardctl_commands() -> "frozenset[str]":
    global _names
    if _names is None:
        with open(_FILE, encoding="utf-8") as listing:
            lines = (line.strip() for line in listing)
            _names = frozenset(line for line in lines if line and not line.startswith("#"))
    return _names
