"""Requests and responses as plain values, and decoding of request bodies."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from guardctl.devserver import protobuf
from guardctl.devserver.errors import ApiError, bad_request

JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    user: str | None  # None: not authenticated


@dataclass(frozen=True)
class Response:
    code: int
    body: bytes
    content_type: str = JSON
    # a stream (`kubectl logs -f`): the body, then the response is held open until the
    # client leaves or the server stops
    follow: bool = False


def json_response(code: int, obj: Any) -> Response:
    return Response(code, json.dumps(obj).encode())


def parse_body(request: Request) -> Any:
    """The request body as JSON, or YAML for apply-patch+yaml; malformed is a 400."""
    content_type = request.headers.get("content-type", "")
    if "protobuf" in content_type:
        return protobuf.decode(request.body)
    if "cbor" in content_type:
        raise ApiError(415, "UnsupportedMediaType",
                       f"the body of the request was in an unknown format - accepted media "
                       f"types include: application/json, application/yaml ({content_type})")
    try:
        if "yaml" in content_type:
            return yaml.safe_load(request.body)
        return json.loads(request.body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the request body could not be decoded: {exc}") from exc


def object_body(request: Request) -> dict[str, Any]:
    body = parse_body(request)
    if not isinstance(body, dict):
        raise bad_request("the request body must be an object")
    return body


def dry_run(request: Request, body: Any = None) -> bool:
    """`?dryRun=All`, or `dryRun: [All]` in DeleteOptions."""
    in_body = isinstance(body, dict) and bool(body.get("dryRun"))
    return request.query.get("dryRun") == "All" or in_body
