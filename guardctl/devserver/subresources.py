"""Subresources kubectl uses (`pods/log`, `serviceaccounts/token`, `*/scale`, `*/status`)
and the create-only review resources (`kubectl auth can-i`, `kubectl auth whoami`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from guardctl.devserver.auth import API_AUDIENCE, service_account_user
from guardctl.devserver.errors import ApiError, bad_request, invalid, path_not_found
from guardctl.devserver.messages import Request, Response, json_response, object_body, parse_body
from guardctl.devserver.patch import PATCHERS
from guardctl.devserver.routes import Target
from guardctl.devserver.store import Object, timestamp

if TYPE_CHECKING:
    from guardctl.devserver.api import Api

# The API minimum and default for TokenRequest.spec.expirationSeconds.
MIN_TOKEN_SECONDS = 600
DEFAULT_TOKEN_SECONDS = 3600
# Streaming subresources need SPDY/websocket upgrades this server does not speak.
STREAMING = frozenset({"exec", "attach", "portforward", "proxy"})


def handle(api: Api, request: Request, target: Target) -> Response:
    sub = target.subresource or ""
    if sub in STREAMING:
        raise bad_request(f"{sub} is not supported by the guardctl devserver")
    if sub == "status":
        return api.resource(request, Target(target.rtype, target.namespace, target.name))
    handler = SUBRESOURCES.get((target.rtype.name, sub, request.method))
    if handler is None:
        raise path_not_found()
    return handler(api, request, target)


# ---------------------------------------------------------------------- pods/log


def _container(pod: Object, wanted: str | None) -> str:
    names = [str(c["name"]) for c in pod.get("spec", {}).get("containers", [])]
    name = pod["metadata"]["name"]
    if wanted is None:
        if len(names) == 1:
            return names[0]
        raise bad_request(f"a container name must be specified for pod {name}, "
                          f"choose one of: [{' '.join(names)}]")
    if wanted not in names:
        raise bad_request(f"container {wanted} is not valid for pod {name}")
    return str(wanted)


def _log(api: Api, request: Request, target: Target) -> Response:
    namespace, name = target.namespace or "", target.name or ""
    pod = api.store.get(target.rtype, namespace, name)
    container = _container(pod, request.query.get("container"))
    lines = api.logs.get((namespace, name), {}).get(container, [])
    tail = request.query.get("tailLines")
    if tail is not None:
        if not tail.isdigit():
            raise bad_request(f"invalid tailLines {tail!r}")
        lines = lines[len(lines) - int(tail):] if int(tail) else []
    text = "".join(f"{line}\n" for line in lines)
    # no container here ever prints again: a follower gets what there is, then waits
    return Response(200, text.encode(), "text/plain",
                    follow=request.query.get("follow") == "true")


# ---------------------------------------------------------------------- serviceaccounts/token


def _token(api: Api, request: Request, target: Target) -> Response:
    namespace, name = target.namespace or "", target.name or ""
    api.store.get(target.rtype, namespace, name)  # 404 for an unknown service account
    body = object_body(request)
    spec = body.get("spec") or {}
    seconds = spec.get("expirationSeconds") or DEFAULT_TOKEN_SECONDS
    if not isinstance(seconds, int) or seconds < MIN_TOKEN_SECONDS:
        raise invalid("TokenRequest", "authentication.k8s.io", name, "spec.expirationSeconds",
                      "Invalid value: may not specify a duration less than 10 minutes")
    audiences = spec.get("audiences") or [API_AUDIENCE]
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise bad_request("spec.audiences must be a list of strings")
    token, expires = api.tokens.issue(service_account_user(namespace, name), seconds,
                                      tuple(audiences))
    response = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"name": name, "namespace": namespace,
                             "creationTimestamp": timestamp(api.clock())},
                "spec": {**spec, "expirationSeconds": seconds},
                "status": {"token": token, "expirationTimestamp": timestamp(expires)}}
    return json_response(201, response)


# ---------------------------------------------------------------------- */scale


def _scale_view(obj: Object) -> Object:
    meta = obj["metadata"]
    labels = (obj.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in labels.items())}}


def _scale(api: Api, request: Request, target: Target) -> Response:
    namespace, name = target.namespace or "", target.name or ""
    if request.method == "GET":
        return json_response(200, _scale_view(api.store.get(target.rtype, namespace, name)))

    def change(current: Object | None) -> Object:
        if current is None:
            raise path_not_found()
        if request.method == "PUT":
            scale = object_body(request)
        else:
            content_type = request.headers.get("content-type", "").split(";")[0]
            patcher = PATCHERS.get(content_type.strip())
            if patcher is None:
                raise ApiError(415, "UnsupportedMediaType", f"unknown patch type {content_type}")
            scale = patcher(_scale_view(current), parse_body(request))
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise bad_request("spec.replicas must be a non-negative integer")
        updated = copy.deepcopy(current)
        updated.setdefault("spec", {})["replicas"] = replicas
        return updated

    obj = api.store.modify(target.rtype, namespace, name, change)
    return json_response(200, _scale_view(obj))


Handler = Callable[["Api", Request, Target], Response]

SUBRESOURCES: dict[tuple[str, str, str], Handler] = {
    ("pods", "log", "GET"): _log,
    ("serviceaccounts", "token", "POST"): _token,
    **{(resource, "scale", method): _scale
       for resource in ("deployments", "replicasets", "statefulsets", "replicationcontrollers")
       for method in ("GET", "PUT", "PATCH")},
}


# ---------------------------------------------------------------------- reviews


def _allowed(_api: Api, _user: str, _spec: Any) -> dict[str, Any]:
    return {"allowed": True, "reason": "the guardctl devserver allows every authenticated user"}


def _rules(_api: Api, _user: str, _spec: Any) -> dict[str, Any]:
    everything = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
    return {"resourceRules": [everything],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False}


def _whoami(_api: Api, user: str, _spec: Any) -> dict[str, Any]:
    return {"userInfo": {"username": user, "groups": ["system:authenticated"]}}


def _token_review(api: Api, _user: str, spec: Any) -> dict[str, Any]:
    """Who a token is, for the audiences asked (`spec.audiences`; the API server's when
    none are), as the API server's TokenReview answers."""
    spec = spec if isinstance(spec, dict) else {}
    token = spec.get("token", "")
    asked = spec.get("audiences") or []
    if not isinstance(token, str) or not isinstance(asked, list):
        return {"authenticated": False, "error": "spec.token and spec.audiences are malformed"}
    reviewed = api.tokens.review(token, tuple(a for a in asked if isinstance(a, str)))
    if reviewed is None:
        return {"authenticated": False, "error": "invalid bearer token"}
    user, audiences = reviewed
    namespace = user.removeprefix("system:serviceaccount:").partition(":")[0]
    groups = ["system:authenticated"]
    if user.startswith("system:serviceaccount:"):
        groups += ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]
    return {"authenticated": True, "user": {"username": user, "groups": groups},
            "audiences": list(audiences)}


REVIEWS: dict[str, Callable[[Api, str, Any], dict[str, Any]]] = {
    "selfsubjectaccessreviews": _allowed,
    "subjectaccessreviews": _allowed,
    "localsubjectaccessreviews": _allowed,
    "selfsubjectrulesreviews": _rules,
    "selfsubjectreviews": _whoami,
    "tokenreviews": _token_review,
}


def review(api: Api, request: Request, target: Target) -> Response:
    """POST to a create-only resource: answer reviews, echo anything else (bindings)."""
    body = object_body(request)
    answer = REVIEWS.get(target.rtype.name)
    if answer is not None:
        body["status"] = answer(api, request.user or "", body.get("spec"))
    return json_response(201, body)
