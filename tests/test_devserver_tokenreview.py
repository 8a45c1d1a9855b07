"""The devserver's TokenReview answers as an API server does: who a token is, for which of
the audiences asked; a token for another audience, expired or unknown, is not authenticated."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from guardctl.devserver import DevServer
from guardctl.devserver.auth import TokenTable

USER = "system:serviceaccount:dev:default"


@pytest.mark.parametrize(("issued", "asked", "answer"), [
    (("guardctl-broker",), ("guardctl-broker",), (USER, ("guardctl-broker",))),
    (("guardctl-broker", "other"), ("other",), (USER, ("other",))),
    (("https://kubernetes.default.svc",), (), (USER, ("https://kubernetes.default.svc",))),
    (("https://kubernetes.default.svc",), ("guardctl-broker",), None),
    (("guardctl-broker",), (), None),
])
def test_a_review_matches_audiences(
    issued: tuple[str, ...], asked: tuple[str, ...], answer: object
) -> None:
    table = TokenTable(lambda: 1000.0)
    token, _ = table.issue(USER, 600, issued)
    assert table.review(token, asked) == answer


def test_an_expired_or_unknown_token_is_not_reviewed() -> None:
    table = TokenTable(lambda: 1000.0)
    token, _ = table.issue(USER, -1, ("guardctl-broker",))
    assert table.review(token, ("guardctl-broker",)) is None
    assert table.review("eyJ.x.y", ("guardctl-broker",)) is None


def test_a_token_for_another_audience_does_not_reach_the_api() -> None:
    table = TokenTable(lambda: 1000.0)
    token, _ = table.issue(USER, 600, ("guardctl-broker",))
    assert table.user_for(f"Bearer {token}") is None
    api_token, _ = table.issue(USER, 600)
    assert table.user_for(f"Bearer {api_token}") == USER


def _post(server: DevServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {server.admin_token}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def test_token_request_and_review_over_http() -> None:
    with DevServer() as server:
        issued = _post(server, "/api/v1/namespaces/dev/serviceaccounts/default/token",
                       {"spec": {"audiences": ["guardctl-broker"], "expirationSeconds": 600}})
        token = issued["status"]["token"]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token, "audiences": ["guardctl-broker"]}}
        status = _post(server, "/apis/authentication.k8s.io/v1/tokenreviews", review)["status"]
        assert status["authenticated"] is True and status["user"]["username"] == USER
        assert status["audiences"] == ["guardctl-broker"]
        review["spec"]["audiences"] = []
        status = _post(server, "/apis/authentication.k8s.io/v1/tokenreviews", review)["status"]
        assert status["authenticated"] is False
