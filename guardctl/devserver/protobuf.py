"""Decode the Kubernetes protobuf bodies kubectl 1.32+ sends for typed `create` commands.

kubectl from 1.32 on POSTs `application/vnd.kubernetes.protobuf` for `create namespace`,
`create secret`, `create token`... and does not retry as JSON. The body is the `k8s\\x00`
magic, then a `runtime.Unknown` whose `raw` field holds the object. Only the kinds and
fields listed in protobuf.yaml are understood; any other field is refused (415) rather
than dropped, so an object is never stored with part of it silently missing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from guardctl.devserver.errors import ApiError
from guardctl.devserver.store import timestamp

MAGIC = b"k8s\x00"
# Wire types (protobuf encoding spec): 0 varint, 1 64-bit, 2 length-delimited, 5 32-bit.
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
MAX_DEPTH = 32
_EMPTY_VALUES: tuple[Any, ...] = ("", 0, {}, [])  # False == 0 is covered by 0


def _unsupported(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType",
                    f"the guardctl devserver cannot decode this protobuf body ({message}); "
                    "send JSON instead, e.g. kubectl create ... --dry-run=client -o yaml | "
                    "kubectl apply -f -")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):  # a varint has at most 10 bytes
        if pos >= len(data):
            break
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise _unsupported("malformed varint")


def fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of one message."""
    pos = 0
    while pos < len(data):  # every iteration consumes at least one byte
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = _varint(data, pos)
            yield number, wire, value
        elif wire == LENGTH:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise _unsupported("truncated field")
            yield number, wire, data[pos:pos + length]
            pos += length
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            yield number, wire, data[pos:pos + size]
            pos += size
        else:
            raise _unsupported(f"wire type {wire}")


@lru_cache(maxsize=1)
def schemas() -> dict[str, dict[int, list[str]]]:
    """protobuf.yaml: message name -> field number -> [JSON name, type]."""
    text = resources.files("guardctl.devserver").joinpath("protobuf.yaml").read_text()
    data: dict[str, dict[int, list[str]]] = yaml.safe_load(text)
    return data


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string" and isinstance(value, bytes):
        return value.decode()
    if kind == "bytes" and isinstance(value, bytes):
        return base64.b64encode(value).decode()  # JSON carries []byte as base64
    if kind == "int" and isinstance(value, int):
        return value - (1 << 64) if value >= 1 << 63 else value
    if kind == "bool" and isinstance(value, int):
        return bool(value)
    raise _unsupported(f"unexpected encoding for a {kind}")


def _map_entry(value_kind: str, data: bytes, depth: int) -> tuple[str, Any]:
    key, value = "", _empty(value_kind)
    for number, _wire, raw in fields(data):
        if number == 1 and isinstance(raw, bytes):
            key = raw.decode()
        elif number == 2:
            value = _value(value_kind, raw, depth)
    return key, value


def _empty(kind: str) -> Any:
    return {"string": "", "bytes": "", "int": 0, "bool": False}.get(kind, {})


def _value(kind: str, raw: int | bytes, depth: int) -> Any:
    if kind in schemas():
        if not isinstance(raw, bytes):
            raise _unsupported(f"unexpected encoding for a {kind}")
        decoded = message(kind, raw, depth + 1)
        if kind == "Time":  # metav1.Time is an RFC 3339 string in JSON
            return timestamp(decoded["seconds"]) if decoded.get("seconds") else ""
        return decoded
    return _scalar(kind, raw)


def message(name: str, data: bytes, depth: int = 0) -> dict[str, Any]:
    """Decode `data` as message `name` of protobuf.yaml into its JSON form."""
    if depth > MAX_DEPTH:
        raise _unsupported("nesting too deep")
    schema = schemas()[name]
    result: dict[str, Any] = {}
    for number, _wire, raw in fields(data):
        if number not in schema:
            raise _unsupported(f"{name} field {number}")
        json_name, kind = schema[number]
        if kind.startswith("map "):
            if not isinstance(raw, bytes):
                raise _unsupported(f"{name}.{json_name} is not a map entry")
            key, value = _map_entry(kind[4:], raw, depth)
            result.setdefault(json_name, {})[key] = value
        elif kind.startswith("repeated "):
            result.setdefault(json_name, []).append(_value(kind[9:], raw, depth))
        else:
            result[json_name] = _value(kind, raw, depth)
    # gogo protobuf writes every non-pointer field, empty or not; JSON omits empty ones.
    return {key: value for key, value in result.items() if value not in _EMPTY_VALUES}


def decode(body: bytes) -> dict[str, Any]:
    """A Kubernetes protobuf request body as the JSON object it stands for."""
    if not body.startswith(MAGIC):
        raise _unsupported("no k8s protobuf magic")
    unknown = message("Unknown", body[len(MAGIC):])
    type_meta = unknown.get("typeMeta", {})
    kind = type_meta.get("kind", "")
    if kind not in schemas() or "apiVersion" not in type_meta:
        raise _unsupported(f"kind {kind or '(none)'}")
    raw = base64.b64decode(unknown.get("raw", ""))
    return {"apiVersion": type_meta["apiVersion"], "kind": kind, **message(kind, raw)}
