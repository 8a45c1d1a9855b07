"""Label and field selectors for list requests (`-l app=web`, `--field-selector metadata.name=x`).

A selector that cannot be parsed is a 400, never "match everything": a delete-collection
with a mistyped selector must not delete the whole namespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from guardctl.devserver.errors import bad_request

Predicate = Callable[[Mapping[str, Any]], bool]

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^()]*)\))?\s*$")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split_requirements(text: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)` parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part for part in parts if part.strip()]


def _equality(key: str, op: str, value: str) -> Callable[[Mapping[str, str]], bool]:
    if op == "!=":
        return lambda labels: labels.get(key) != value
    return lambda labels: labels.get(key) == value


def _set_based(negate: str, key: str, op: str | None, values_text: str | None
               ) -> Callable[[Mapping[str, str]], bool]:
    if op is None:
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    if negate:
        raise bad_request(f"unable to parse requirement: '!' before '{key} {op}'")
    values = {v.strip() for v in (values_text or "").split(",") if v.strip()}
    if op == "in":
        return lambda labels: labels.get(key) in values
    return lambda labels: labels.get(key) not in values


def _label_requirement(text: str) -> Callable[[Mapping[str, str]], bool]:
    eq = _EQ_RE.match(text)
    if eq:
        return _equality(*eq.groups())
    set_based = _SET_RE.match(text)
    if set_based:
        negate, key, op, values = set_based.groups()
        return _set_based(negate, key, op, values)
    raise bad_request(f"unable to parse requirement: {text.strip()!r}")


def label_selector(text: str) -> Predicate:
    """A predicate on objects for a label selector string; empty selects everything."""
    checks = [_label_requirement(part) for part in _split_requirements(text)]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return matches


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The value at a dotted path as a field selector sees it ("" when absent)."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    return "" if node is None else str(node)


def field_selector(text: str) -> Predicate:
    """A predicate for `metadata.name=x,status.phase!=Running` style field selectors."""
    checks: list[tuple[str, bool, str]] = []
    for part in _split_requirements(text):
        match = _EQ_RE.match(part)
        if not match:
            raise bad_request(f"invalid field selector: {part.strip()!r}")
        path, op, value = match.groups()
        checks.append((path, op != "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in checks)

    return matches
