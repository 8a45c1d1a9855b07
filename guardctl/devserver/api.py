"""The API server's request handling, HTTP-free: a `Request` in, a `Response` out.

Routing, CRUD on the store, discovery and Table negotiation live here; subresources
(log, token, scale, reviews) in subresources.py; sockets and threads in server.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guardctl.devserver import openapi, subresources
from guardctl.devserver import patch as patching
from guardctl.devserver.auth import TokenTable
from guardctl.devserver.discovery import SERVER_VERSION, Discovery, ResourceType
from guardctl.devserver.errors import (
    ApiError,
    bad_request,
    method_not_allowed,
    not_found,
    path_not_found,
    unauthorized,
)
from guardctl.devserver.messages import (
    Request,
    Response,
    dry_run,
    json_response,
    object_body,
    parse_body,
)
from guardctl.devserver.routes import DiscoveryPath, Target, route
from guardctl.devserver.seed import Logs
from guardctl.devserver.selectors import field_selector, label_selector
from guardctl.devserver.store import Object, Store
from guardctl.devserver.tables import table

HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


class Api:
    """Serves one cluster: `handle(request)` never raises, errors become `Status` bodies."""

    def __init__(self, discovery: Discovery, store: Store, tokens: TokenTable, logs: Logs,
                 clock: Callable[[], float], address: str) -> None:
        self.discovery = discovery
        self.store = store
        self.tokens = tokens
        self.logs = logs
        self.clock = clock
        self.address = address  # host:port, for /api's serverAddressByClientCIDRs

    def handle(self, request: Request) -> Response:
        try:
            return self._handle(request)
        except ApiError as error:
            return json_response(error.code, error.status())

    def _handle(self, request: Request) -> Response:
        if request.user is None:
            raise unauthorized()
        if request.path in HEALTH_PATHS:
            return Response(200, b"ok", "text/plain")
        if request.path == "/version":
            return json_response(200, SERVER_VERSION)
        if request.path.startswith("/openapi/"):
            return json_response(200, self._openapi(request.path))
        target = route(self.discovery, request.path)
        if isinstance(target, DiscoveryPath):
            return json_response(200, self._discovery(target))
        if target.subresource is not None:
            return subresources.handle(self, request, target)
        return self.resource(request, target)

    def _openapi(self, path: str) -> Any:
        parts = [part for part in path.split("/") if part][1:]  # after "openapi"
        found = None
        if parts == ["v3"]:
            found = openapi.index(self.discovery)
        elif parts[:2] == ["v3", "api"] and len(parts) == 3:
            found = openapi.document(self.discovery, "", parts[2])
        elif parts[:2] == ["v3", "apis"] and len(parts) == 4:
            found = openapi.document(self.discovery, parts[2], parts[3])
        if found is None:  # /openapi/v2 included: kubectl copes without it
            raise path_not_found()
        return found

    def _discovery(self, path: DiscoveryPath) -> Any:
        if path.root == "api" and path.version is None:
            return self.discovery.core_versions(self.address)
        if path.group is None:
            return self.discovery.group_list()
        found = (self.discovery.group(path.group) if path.version is None
                 else self.discovery.resource_list(path.group, path.version))
        if found is None:
            raise path_not_found()
        return found

    # ------------------------------------------------------------------ resources

    def resource(self, request: Request, target: Target) -> Response:
        """Serve a collection or object URL (no subresource)."""
        collection = target.name is None
        verb = {
            ("GET", True): "list", ("GET", False): "get", ("POST", True): "create",
            ("PUT", False): "update", ("PATCH", False): "patch", ("DELETE", False): "delete",
            ("DELETE", True): "deletecollection",
        }.get((request.method, collection))
        verbs = target.rtype.verbs
        if request.method == "POST" and "create" in verbs and "get" not in verbs:
            return subresources.review(self, request, target)
        if verb is None or verb not in target.rtype.verbs:
            raise method_not_allowed(verb or request.method, target.rtype.name,
                                     target.rtype.group)
        if request.query.get("watch") in ("true", "1"):
            raise bad_request("watch is not supported by the guardctl devserver")
        handler: Callable[[Request, Target], Response] = getattr(self, f"_{verb}")
        return handler(request, target)

    def render(self, request: Request, rtype: ResourceType, objects: list[Object],
               resource_version: str, kind: str | None = None) -> Any:
        """A Table when kubectl asks for one (`as=Table`), else the object or a List."""
        if "as=Table" in request.headers.get("accept", ""):
            return table(rtype.group, rtype.name, objects, resource_version, self.clock(),
                         request.query.get("includeObject", "Metadata"))
        if kind is None:
            return objects[0]
        return {"kind": kind, "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": resource_version}, "items": objects}

    def _matching(self, request: Request, target: Target) -> tuple[list[Object], str]:
        labels = label_selector(request.query.get("labelSelector", ""))
        fields = field_selector(request.query.get("fieldSelector", ""))
        return self.store.list(target.rtype, target.namespace,
                               lambda obj: labels(obj) and fields(obj))

    def _list(self, request: Request, target: Target) -> Response:
        items, version = self._matching(request, target)
        return json_response(200, self.render(request, target.rtype, items, version,
                                              f"{target.rtype.kind}List"))

    def _get(self, request: Request, target: Target) -> Response:
        obj = self.store.get(target.rtype, target.namespace or "", target.name or "")
        return json_response(200, self.render(request, target.rtype, [obj],
                                              obj["metadata"]["resourceVersion"]))

    def _create(self, request: Request, target: Target) -> Response:
        obj = self.store.create(target.rtype, self._namespace_for(target, request),
                                object_body(request), dry_run(request))
        return json_response(201, obj)

    def _namespace_for(self, target: Target, request: Request) -> str:
        if not target.rtype.namespaced:
            return ""
        if target.namespace is None:
            raise bad_request("a namespaced object must be created in a namespace URL")
        return target.namespace

    def _update(self, request: Request, target: Target) -> Response:
        obj = self.store.update(target.rtype, target.namespace or "", target.name or "",
                                object_body(request), dry_run(request))
        return json_response(200, obj)

    def _patch(self, request: Request, target: Target) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        patcher = patching.PATCHERS.get(content_type)
        if patcher is None:
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format: {content_type}")
        body = parse_body(request)
        applying = content_type == "application/apply-patch+yaml"

        def change(current: Object | None) -> Object:
            if current is None and not applying:
                raise not_found(target.rtype.name, target.rtype.group, target.name or "")
            result = patcher(current or {}, body)
            if not isinstance(result, dict):
                raise bad_request("the patch did not produce an object")
            return result

        obj = self.store.modify(target.rtype, target.namespace or "", target.name or "",
                                change, dry_run(request))
        return json_response(200, obj)

    def _delete(self, request: Request, target: Target) -> Response:
        obj = self.store.delete(target.rtype, target.namespace or "", target.name or "",
                                dry_run(request, parse_body(request)))
        return json_response(200, obj)

    def _deletecollection(self, request: Request, target: Target) -> Response:
        items, version = self._matching(request, target)
        dry = dry_run(request, parse_body(request))
        deleted = [self.store.delete(target.rtype, obj["metadata"].get("namespace", ""),
                                     obj["metadata"]["name"], dry) for obj in items]
        return json_response(200, self.render(request, target.rtype, deleted, version,
                                              f"{target.rtype.kind}List"))
