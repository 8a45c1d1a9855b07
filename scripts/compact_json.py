"""The JSON layout of guardctl's generated data files: compact, one list item per line.

One item per line keeps the files small and makes a regenerated table's diff show what changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping


def _one_line(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def dump(table: Mapping[str, object]) -> str:
    """`table` as JSON text; each top-level list item or mapping entry on its own line."""
    lines = ["{"]
    keys = list(table)
    for i, key in enumerate(keys):
        value = table[key]
        end = "," if i < len(keys) - 1 else ""
        if isinstance(value, list):
            items, opener, closer = [_one_line(v) for v in value], "[", "]"
        elif isinstance(value, dict):
            items = [f"{_one_line(k)}:{_one_line(v)}" for k, v in value.items()]
            opener, closer = "{", "}"
        else:
            lines.append(f"{_one_line(key)}:{_one_line(value)}{end}")
            continue
        lines.append(f"{_one_line(key)}:{opener}")
        lines.extend(f"{item}," for item in items[:-1])
        lines.extend(items[-1:])
        lines.append(f"{closer}{end}")
    lines.append("}")
    return "\n".join(lines) + "\n"
