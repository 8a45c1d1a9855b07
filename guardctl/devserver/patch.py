"""The three PATCH flavours kubectl sends: JSON merge, JSON patch and (approximate) strategic merge.

Strategic merge is approximated: maps merge recursively, lists of maps merge by the first
merge key every element carries (`name`, `mountPath`, `containerPort`, `port`), other lists
are replaced, and `$`-directives are honoured for `$patch: delete/replace` and otherwise
dropped (`$setElementOrder/...` and `$retainKeys` only reorder or prune, which this
in-memory server does not need for kubectl's output to be right).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from guardctl.devserver.errors import ApiError

_MERGE_KEYS = ("name", "mountPath", "containerPort", "port")


def _invalid(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request: {message}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(items: list[Any]) -> str | None:
    for key in _MERGE_KEYS:
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def _strategic_list(target: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(patch)
    if key is None or not all(isinstance(item, dict) and key in item for item in target):
        return [copy.deepcopy(item) for item in patch if not _is_directive_item(item)]
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        index = next((i for i, old in enumerate(result) if old[key] == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
        elif index is None:
            result.append(strategic_merge({}, item))
        else:
            result[index] = strategic_merge(result[index], item)
    return result


def _is_directive_item(item: Any) -> bool:
    return isinstance(item, dict) and "$patch" in item


def strategic_merge(target: Any, patch: Any) -> Any:
    """Approximate strategic merge patch (see the module docstring for what is covered)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        old = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(old, list):
            result[key] = _strategic_list(old, value)
        else:
            result[key] = strategic_merge(old, value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _invalid(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        node = _child(node, part, path)
    return node


def _child(node: Any, part: str, path: str) -> Any:
    if isinstance(node, dict) and part in node:
        return node[part]
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    raise _invalid(f"path {path!r} does not exist")


def _list_index(node: list[Any], part: str, path: str, adding: bool) -> int:
    if adding and part == "-":
        return len(node)
    limit = len(node) + (1 if adding else 0)
    if not part.isdigit() or int(part) >= limit:
        raise _invalid(f"index {part!r} out of range in {path!r}")
    return int(part)


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[parts[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, parts[-1], path, adding=True), value)
    else:
        raise _invalid(f"cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise _invalid("cannot remove the whole document")
    parent = _parent(doc, parts, path)
    if isinstance(parent, dict) and parts[-1] in parent:
        return doc, parent.pop(parts[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_list_index(parent, parts[-1], path, adding=False))
    raise _invalid(f"path {path!r} does not exist")


def _get(doc: Any, path: str) -> Any:
    node = doc
    for part in _pointer(path):
        node = _child(node, part, path)
    return node


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    kind, path = op.get("op"), op.get("path")
    if not isinstance(path, str):
        raise _invalid(f"operation {op!r} has no path")
    if kind == "add":
        return _add(doc, path, copy.deepcopy(op.get("value")))
    if kind == "remove":
        return _remove(doc, path)[0]
    if kind == "replace":
        _get(doc, path)  # replace requires the target to exist
        return _add(_remove(doc, path)[0], path, copy.deepcopy(op.get("value")))
    if kind in ("move", "copy"):
        source = op.get("from")
        if not isinstance(source, str):
            raise _invalid(f"operation {kind} has no 'from'")
        if kind == "move":
            doc, value = _remove(doc, source)
        else:
            value = copy.deepcopy(_get(doc, source))
        return _add(doc, path, value)
    if kind == "test":
        if _get(doc, path) != op.get("value"):
            raise _invalid(f"test failed at {path!r}")
        return doc
    raise _invalid(f"unknown JSON patch operation {kind!r}")


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch; any failing operation rejects the whole patch (422)."""
    if not isinstance(operations, list):
        raise _invalid("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict):
            raise _invalid(f"operation {op!r} is not an object")
        doc = _apply_op(doc, op)
    return doc


# PATCH content type -> how the body changes the stored object
PATCHERS: dict[str, Callable[[Any, Any], Any]] = {
    "application/json-patch+json": json_patch,
    "application/merge-patch+json": merge_patch,
    "application/strategic-merge-patch+json": strategic_merge,
    # Server-side apply, approximated as a merge; it may create the object.
    "application/apply-patch+yaml": merge_patch,
}
